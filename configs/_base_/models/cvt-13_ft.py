# CvT-13 fine-tuned at 384x384, following the ViT fine-tuning protocol the
# paper adopts: plain cross-entropy, no Mixup / CutMix / label smoothing.
# Only the backbone is loaded; the head is new (trunc-normal init).
# The backbone starts from the published ImageNet-22k model: the official
# CvT-13-384x384-IN-22k weights on the HuggingFace hub, which are pre-trained
# on ImageNet-22k AND already fine-tuned on ImageNet-1k at 384 (raw 22k
# weights were never released). To start from your own 22k run instead, set
# checkpoint='work_dirs/cvt-13_in21k/epoch_300.pth'
# (configs/cvt/cvt-13_in21k.py).
# Without position embeddings the backbone has no resolution-dependent
# weights, so 224 weights would load as they are at 384 too.
_base_ = './cvt-13.py'

model = dict(
    backbone=dict(
        img_size=384,
        init_cfg=dict(
            type='Pretrained', checkpoint='hf://microsoft/cvt-13-384-22k')),
    head=dict(
        loss=dict(_delete_=True, type='CrossEntropyLoss', loss_weight=1.0)),
    train_cfg=None,
)
