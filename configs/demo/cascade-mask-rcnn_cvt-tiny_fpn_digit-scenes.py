# Cascade Mask R-CNN + FPN on the digit scenes, starting from the digits
# classifier of the demo: the project's CvT-13 Cascade config
# (../cvt_det/cascade-mask-rcnn_cvt-13_fpn_ms-crop-3x_coco.py, mmdet's
# ConvNeXt 3x recipe) shrunk as mask-rcnn_cvt-tiny_fpn_digit-scenes.py is
# (the demo's tiny CvT, neck and heads 4x narrower, scenes of at most
# 224x160, 16-256 pixel anchors), with the same data, schedule and lr, for
# the comparison in README.md. Not part of tools/demo.sh.
_base_ = [
    '../cvt_det/cascade-mask-rcnn_cvt-13_fpn_ms-crop-3x_coco.py',
    '../_base_/models/cvt-tiny_digits.py',
    '../_base_/datasets/digit-scenes_instance.py',
    '../_base_/schedules/digit-scenes_det_3e.py'
]

neck_channels = 64
model = dict(
    data_preprocessor=dict(mean=_base_.digits_mean, std=_base_.digits_std),
    backbone=dict(
        _base_.cvt_backbone,
        **_base_.tiny_cvt,
        _delete_=True,
        init_cfg=dict(type='Pretrained',
                      checkpoint=_base_.digits_classifier)),
    neck=dict(in_channels=[32, 64, 128], out_channels=neck_channels),
    rpn_head=dict(
        in_channels=neck_channels,
        feat_channels=neck_channels,
        anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=neck_channels),
        # each cascade stage's 4conv1fc box head, narrowed like the neck
        bbox_head=[
            dict(
                head,
                in_channels=neck_channels,
                conv_out_channels=neck_channels,
                fc_out_channels=256,
                num_classes=10) for head in _base_.model.roi_head.bbox_head
        ],
        mask_roi_extractor=dict(out_channels=neck_channels),
        mask_head=dict(
            in_channels=neck_channels,
            conv_out_channels=neck_channels,
            num_classes=10)),
    # as the Mask R-CNN demo: 64 sampled RoIs per image and stage
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=200),
        rcnn=[
            dict(stage, sampler=dict(stage.sampler, num=64))
            for stage in _base_.model.train_cfg.rcnn
        ]),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=200)))

data_root = _base_.digit_scenes_root
train_dataloader = _base_.digit_scenes_train_dataloader
val_dataloader = _base_.digit_scenes_val_dataloader
test_dataloader = val_dataloader
val_evaluator = _base_.digit_scenes_val_evaluator
test_evaluator = val_evaluator

# fp32 (no mixed precision on a CPU), at the Mask R-CNN demo's lr
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(lr=8e-4))
param_scheduler = _base_.digit_scenes_param_scheduler
train_cfg = _base_.digit_scenes_train_cfg
default_hooks = _base_.digit_scenes_default_hooks
randomness = dict(seed=0)
auto_scale_lr = dict(base_batch_size=4)
