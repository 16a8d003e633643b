# DINO (4 levels) on the digit scenes, starting from the digits classifier
# of the demo: the project's CvT-13 DINO config
# (../cvt_det/dino-4scale_cvt-13_8xb2-12e_coco.py, mmdet's DINO-4scale R50
# recipe) shrunk as mask-rcnn_cvt-tiny_fpn_digit-scenes.py is (the demo's
# tiny CvT, scenes of at most 224x160; ChannelMapper, encoder, decoder and
# head 4x narrower, 64 channels; 100 queries for at most 5 digits), with
# the same data and schedule, for the comparison in README.md. Not part of
# tools/demo.sh.
_base_ = [
    '../cvt_det/dino-4scale_cvt-13_8xb2-12e_coco.py',
    '../_base_/models/cvt-tiny_digits.py',
    '../_base_/datasets/digit-scenes_instance.py',
    '../_base_/schedules/digit-scenes_det_3e.py'
]

channels = 64
model = dict(
    num_queries=100,  # the recipe's 900 for up to ~100 COCO objects
    data_preprocessor=dict(mean=_base_.digits_mean, std=_base_.digits_std),
    backbone=dict(
        _base_.cvt_backbone,
        **_base_.tiny_cvt,
        _delete_=True,
        init_cfg=dict(type='Pretrained',
                      checkpoint=_base_.digits_classifier)),
    neck=dict(in_channels=[32, 64, 128], out_channels=channels),
    encoder=dict(
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=channels),
            ffn_cfg=dict(
                embed_dims=channels, feedforward_channels=8 * channels))),
    decoder=dict(
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=channels),
            cross_attn_cfg=dict(embed_dims=channels),
            ffn_cfg=dict(
                embed_dims=channels, feedforward_channels=8 * channels))),
    positional_encoding=dict(num_feats=channels // 2),
    bbox_head=dict(num_classes=10, embed_dims=channels),
    test_cfg=dict(max_per_img=100))

data_root = _base_.digit_scenes_root
train_dataloader = _base_.digit_scenes_train_dataloader
val_dataloader = _base_.digit_scenes_val_dataloader
test_dataloader = val_dataloader
val_evaluator = _base_.digit_scenes_val_evaluator
test_evaluator = val_evaluator

# the Mask R-CNN demo's schedule at 4x the recipe's lr (the backbone at 0.1x
# of it, gradient clipping at 0.1, as in the recipe)
optim_wrapper = dict(optimizer=dict(lr=4e-4))
param_scheduler = _base_.digit_scenes_param_scheduler
train_cfg = _base_.digit_scenes_train_cfg
default_hooks = _base_.digit_scenes_default_hooks
randomness = dict(seed=0)
auto_scale_lr = dict(base_batch_size=4)
