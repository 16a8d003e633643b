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
    '../_base_/models/cvt-tiny_digits.py',
    '../_base_/datasets/digit-scenes_instance.py',
    '../_base_/schedules/digit-scenes_det_3e.py'
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

# data: ../_base_/datasets/digit-scenes_instance.py, trained at 0.75x-1.5x
data_root = _base_.digit_scenes_root
train_dataloader = _base_.digit_scenes_train_dataloader
val_dataloader = _base_.digit_scenes_val_dataloader
test_dataloader = val_dataloader
val_evaluator = _base_.digit_scenes_val_evaluator
test_evaluator = val_evaluator

# schedule: ../_base_/schedules/digit-scenes_det_3e.py (3 epochs of 200
# iterations), at 8x the recipe's lr
optim_wrapper = dict(optimizer=dict(lr=8e-4))
param_scheduler = _base_.digit_scenes_param_scheduler
train_cfg = _base_.digit_scenes_train_cfg
default_hooks = _base_.digit_scenes_default_hooks
randomness = dict(seed=0)
auto_scale_lr = dict(base_batch_size=4)
