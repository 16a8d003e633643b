# Mask R-CNN + FPN on scenes of handwritten digits, starting from the digits
# classifier of the demo: the project's CvT-13 Mask R-CNN config
# (../cvt_det/mask-rcnn_cvt-13_fpn_1x_coco.py, mmdet's 1x recipe) shrunk in
# arch width (the demo's tiny CvT, neck and heads 4x narrower), image size
# (scenes of at most 224x160) and schedule, trained at several scales with
# smaller anchors (below). Data (no download):
#   python tools/dataset_converters/prepare_digit_scenes.py
# Results, the controls (from scratch, frozen at random init) and what each
# change measured: README.md.
_base_ = [
    '../cvt_det/mask-rcnn_cvt-13_fpn_1x_coco.py',
    '../_base_/models/cvt-tiny_digits.py'
]

neck_channels = 64
model = dict(
    # the classifier's pixel normalisation
    data_preprocessor=dict(mean=_base_.digits_mean, std=_base_.digits_std),
    # the classifier's backbone, loaded as ImageNet weights are (the head of
    # the classification checkpoint is left out)
    backbone=dict(
        _base_.cvt_backbone,
        **_base_.tiny_cvt,
        _delete_=True,
        init_cfg=dict(type='Pretrained',
                      checkpoint=_base_.digits_classifier)),
    neck=dict(in_channels=[32, 64, 128], out_channels=neck_channels),
    # the recipe's anchors (32-512 pixels) halved, as the digits are small
    # for it: 16-256 pixels, so that a digit shrunk to 15 pixels (0.75x)
    # still has an anchor it overlaps by more than the RPN's 0.3
    rpn_head=dict(
        in_channels=neck_channels,
        feat_channels=neck_channels,
        anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=neck_channels),
        bbox_head=dict(
            in_channels=neck_channels, fc_out_channels=256, num_classes=10),
        mask_roi_extractor=dict(out_channels=neck_channels),
        mask_head=dict(
            in_channels=neck_channels,
            conv_out_channels=neck_channels,
            num_classes=10)),
    # proposals and sampled RoIs per image scaled down with the image area
    # (224x160 against 1333x800) and the number of objects
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=200)))

# data: 800 training / 100 validation scenes (96-160 x 128-224 pixels, 2-5
# digits of 20-48 pixels each), COCO instances with stroke masks
data_root = 'data/digit_scenes/'
metainfo = dict(classes=tuple(str(d) for d in range(10)))
scale = (224, 160)  # the recipe's (1333, 800), shrunk with the scenes
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    # multi-scale training as in the 3x recipe (../cvt_det/*_ms-crop-3x_*),
    # over the range of the three test scales: 0.75x to 1.5x
    dict(
        type='RandomResize',
        scale=[(168, 120), (336, 240)],
        keep_ratio=True),
    # no flip: a mirrored digit is not a digit
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
dataset = dict(data_root=data_root, metainfo=metainfo)
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(
        dataset,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='images/train/'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(
        dataset,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='images/val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# schedule: the recipe's AdamW and step decay, over 3 epochs of 200
# iterations (batch 4) with a 50-iteration warm-up and one step, before the
# last epoch; validated after every epoch (the curves)
max_epochs = 3
optim_wrapper = dict(optimizer=dict(lr=8e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=50),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[2], gamma=0.1)
]
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
default_hooks = dict(
    logger=dict(interval=25), checkpoint=dict(interval=max_epochs))
randomness = dict(seed=0)
auto_scale_lr = dict(base_batch_size=4)
