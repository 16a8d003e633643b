# The digit scenes as COCO instances, for the demo detectors
# (configs/demo/*_digit-scenes*.py). Like ../models/cvt-13_dense.py this file
# sets only variables, so that it can be listed next to a toolkit recipe; the
# configs merge them into the recipe's, e.g.
#     train_dataloader = _base_.digit_scenes_train_dataloader
# Data (no download): python tools/dataset_converters/prepare_digit_scenes.py
# 800 training / 100 validation scenes (96-160 x 128-224 pixels, 2-5 digits
# of 20-48 pixels each), COCO instances with stroke masks.
digit_scenes_root = 'data/digit_scenes/'
digit_scenes_scale = (224, 160)  # the recipes' (1333, 800), shrunk
_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    # multi-scale training as in the 3x recipes, over the range of the
    # three test scales: 0.75x to 1.5x
    dict(
        type='RandomResize',
        scale=[(168, 120), (336, 240)],
        keep_ratio=True),
    # no flip: a mirrored digit is not a digit
    dict(type='PackDetInputs'),
]
_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=digit_scenes_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
_dataset = dict(
    data_root=digit_scenes_root,
    metainfo=dict(classes=tuple(str(d) for d in range(10))))
digit_scenes_train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(
        _dataset,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='images/train/'),
        pipeline=_train_pipeline))
digit_scenes_val_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(
        _dataset,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='images/val/'),
        pipeline=_test_pipeline))
digit_scenes_val_evaluator = dict(
    ann_file=digit_scenes_root + 'annotations/instances_val.json')
