# Mask2Former on the digit scenes, starting from the digits classifier of the
# demo: the project's CvT-13 Mask2Former config
# (../cvt_seg/mask2former_cvt-13_8xb2-160k_ade20k-512x512.py,
# mmseg's Swin-T recipe) shrunk as upernet_cvt-tiny_digit-scenes.py is (the
# demo's tiny CvT, 128x128 crops of scenes of at most 224x160), with the
# neck, pixel decoder and transformer decoder 4x narrower (64 channels) and
# shallower (3 encoder and 3 decoder layers instead of 6 and 9), the sampled
# mask points scaled with the crop area and the same data, for the
# comparison in README.md. Not part of tools/demo.sh.
_base_ = [
    '../cvt_seg/mask2former_cvt-13_8xb2-160k_ade20k-512x512.py',
    '../_base_/models/cvt-tiny_digits.py',
    '../_base_/datasets/digit-scenes_semantic.py',
    '../_base_/schedules/digit-scenes_seg_1k.py'
]

crop_size = _base_.digit_scenes_crop_size
num_classes = _base_.digit_scenes_num_classes
channels = 64
num_queries = 20  # the recipe's 100 for 150 classes; 11 classes here
model = dict(
    data_preprocessor=dict(
        mean=_base_.digits_mean, std=_base_.digits_std, size=crop_size),
    backbone=dict(
        _base_.cvt_backbone,
        **_base_.tiny_cvt,
        _delete_=True,
        norm_eval=False,
        init_cfg=dict(type='Pretrained',
                      checkpoint=_base_.digits_classifier)),
    neck=dict(in_channels=[32, 64, 128], out_channels=channels),
    decode_head=dict(
        in_channels=[channels] * 4,
        feat_channels=channels,
        out_channels=channels,
        num_classes=num_classes,
        num_queries=num_queries,
        pixel_decoder=dict(
            encoder=dict(
                num_layers=3,
                layer_cfg=dict(
                    self_attn_cfg=dict(embed_dims=channels),
                    ffn_cfg=dict(
                        embed_dims=channels,
                        feedforward_channels=4 * channels))),
            positional_encoding=dict(num_feats=channels // 2)),
        positional_encoding=dict(num_feats=channels // 2),
        # 3 layers, one per level: 15.6 mIoU at 1,000 iterations against
        # 10.7 with the recipe's 9, in half the time (README.md)
        transformer_decoder=dict(
            num_layers=3,
            layer_cfg=dict(
                self_attn_cfg=dict(embed_dims=channels),
                cross_attn_cfg=dict(embed_dims=channels),
                ffn_cfg=dict(
                    embed_dims=channels,
                    feedforward_channels=8 * channels))),
        # "no object" weighs 0.1, as in the recipe
        loss_cls=dict(class_weight=[1.0] * num_classes + [0.1]),
        # the recipe's 12544 points per mask on 128x128 masks (512x512
        # crops), scaled with the area to these 32x32 masks
        train_cfg=dict(num_points=784)))

train_dataloader = _base_.digit_scenes_train_dataloader
val_dataloader = _base_.digit_scenes_val_dataloader
test_dataloader = val_dataloader
test_pipeline = _base_.digit_scenes_test_pipeline  # for inference_model

# the UperNet demo's schedule (../_base_/schedules/digit-scenes_seg_1k.py)
# over 3x the iterations: at UperNet's 1,000 Mask2Former has not learnt the
# digits yet (15.6 mIoU), at 3,000 it has (47.6; README.md); the recipe's
# AdamW (backbone at 0.1x lr) and gradient clipping (0.01) at 10x its lr
max_iters = 3000
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    _base_.digit_scenes_seg_param_scheduler[0],
    dict(_base_.digit_scenes_seg_param_scheduler[1], end=max_iters)
]
train_cfg = dict(max_iters=max_iters, val_interval=500)
default_hooks = dict(
    _base_.digit_scenes_seg_default_hooks,
    checkpoint=dict(
        _base_.digit_scenes_seg_default_hooks.checkpoint,
        interval=max_iters))
env_cfg = dict(cudnn_benchmark=False)
randomness = dict(seed=0)
auto_scale_lr = dict(base_batch_size=8)
