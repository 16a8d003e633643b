# CvT-13 fine-tuned at 384x384 from its ImageNet-22k pre-training
# (configs/cvt/cvt-13_in21k.py), following the ViT fine-tuning protocol the
# paper adopts: plain cross-entropy, no Mixup / CutMix / label smoothing.
# Only the backbone is loaded; the head is new (trunc-normal init).
# Without position embeddings the backbone has no resolution-dependent
# weights, so 224 weights load as they are at 384.
_base_ = './cvt-13.py'

model = dict(
    backbone=dict(
        img_size=384,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='work_dirs/cvt-13_in21k/epoch_300.pth',
            prefix='backbone')),
    head=dict(
        loss=dict(_delete_=True, type='CrossEntropyLoss', loss_weight=1.0)),
    train_cfg=None,
)
