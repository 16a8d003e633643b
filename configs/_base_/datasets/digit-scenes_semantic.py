# The digit scenes as label maps, for the demo segmenters
# (configs/demo/*_digit-scenes*.py): variables only, as
# digit-scenes_instance.py. 11 classes: background and the digits 0-9
# (label 0 = background, 1 + digit). Data (no download):
#   python tools/dataset_converters/prepare_digit_scenes.py
digit_scenes_crop_size = (128, 128)
digit_scenes_num_classes = 11
_scale = (224, 160)  # the recipes' (2048, 512), shrunk with the scenes
_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),  # 0 is a class here, not "ignore"
    # the range of the three test scales (the recipes' is 0.5-2.0)
    dict(
        type='RandomResize',
        scale=_scale,
        ratio_range=(0.75, 1.5),
        keep_ratio=True),
    dict(
        type='RandomCrop', crop_size=digit_scenes_crop_size,
        cat_max_ratio=0.75),
    # no flip: a mirrored digit is not a digit
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
# also the configs' test_pipeline, which mmseg's inference_model reads
digit_scenes_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=_scale, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
_dataset = dict(
    _delete_=True,
    type='BaseSegDataset',
    data_root='data/digit_scenes/',
    metainfo=dict(
        classes=('background', ) + tuple(str(d) for d in range(10)),
        palette=[[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25],
                 [0, 130, 200], [245, 130, 48], [145, 30, 180],
                 [70, 240, 240], [240, 50, 230], [210, 245, 60],
                 [250, 190, 212]]),
    img_suffix='.png',
    seg_map_suffix='.png')
digit_scenes_train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(
        _dataset,
        data_prefix=dict(
            img_path='images/train', seg_map_path='seg_maps/train'),
        pipeline=_train_pipeline))
digit_scenes_val_dataloader = dict(
    num_workers=1,
    dataset=dict(
        _dataset,
        data_prefix=dict(img_path='images/val', seg_map_path='seg_maps/val'),
        pipeline=digit_scenes_test_pipeline))
