# A tiny CvT trained on scikit-learn's handwritten digits in a few minutes on
# a CPU. Prepare the data first (no download, the images ship with
# scikit-learn):
#   python tools/dataset_converters/prepare_digits.py   # -> data/digits
#   python tools/train.py configs/demo/cvt-tiny_digits.py
# 3 stages at 32x32 input: 8x8, 4x4 and 2x2 token grids (CvT-13's
# convolutional token embeddings: 7x7 stride 4, then 3x3 stride 2),
# depth-wise convolutional projections with BatchNorm, class token in the
# last stage. The same tiny CvT is the backbone of the detection and
# segmentation demos (../_base_/models/cvt-tiny_digits.py).
_base_ = [
    '../_base_/default_runtime.py', '../_base_/models/cvt-tiny_digits.py'
]

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='mmcvt.CvT', **_base_.tiny_cvt, img_size=32,
        out_type='cls_token'),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=128,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
    ),
)

# data: 1,438 training / 359 validation images, 32x32 RGB (grey digits)
dataset_type = 'CustomDataset'
data_root = 'data/digits'
data_preprocessor = dict(
    num_classes=10,
    mean=_base_.digits_mean,
    std=_base_.digits_std,
    to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    # mild scale / aspect jitter; no flips (digits are not symmetric)
    dict(
        type='RandomResizedCrop',
        scale=32,
        crop_ratio_range=(0.6, 1.0),
        backend='pillow',
        interpolation='bilinear'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix='train',
        pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=128,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix='val',
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

# schedule: AdamW + 1 warm-up epoch + cosine, evaluated every epoch
max_epochs = 20
lr = 2e-3
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=lr, weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={'.cls_token': dict(decay_mult=0.0)}),
)
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.01,
        by_epoch=True,
        begin=0,
        end=1,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-5,
        by_epoch=True,
        begin=1,
        end=max_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=32)

# runtime: log every 10 iterations, keep the last and the best checkpoint
default_hooks = dict(
    logger=dict(interval=10), checkpoint=dict(interval=1, max_keep_ckpts=1))
randomness = dict(seed=0)
