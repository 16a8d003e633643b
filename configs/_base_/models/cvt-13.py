# CvT-13 (Wu et al., 2021) for ImageNet-1k classification.
# Head and regularisation follow the official recipe (microsoft/CvT
# experiments/imagenet/cvt/*.yaml): classifier on the stage-3 class token,
# label smoothing 0.1, Mixup 0.8 / CutMix 1.0 chosen with equal probability
# per batch (timm `mixup_switch_prob=0.5`), stochastic depth as in the arch
# table of the backbone, head weights trunc-normal(std=0.02).
model = dict(
    type='ImageClassifier',
    backbone=dict(type='mmcvt.CvT', arch='13', out_type='cls_token'),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=384,
        # timm-style smoothing (eps / num_classes added to every class)
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
    ),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]),
)
