# UperNet, CvT-13 backbone (ImageNet-1k weights), ADE20K 512x512, 160k iters.
# Everything but the backbone, the head inputs and the no-decay rules is
# mmseg's Swin-T UperNet recipe: AdamW lr 6e-5 / weight decay 0.01, 1500-iter
# linear warm-up then poly decay, 2 crops per GPU x 8 GPUs, SyncBN heads,
# auxiliary FCN head on the stride-16 map. The CvT settings shared with the
# other det / seg configs: ../_base_/models/cvt-13_dense.py. Design notes:
# README.md.
_base_ = [
    'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',  # noqa
    '../_base_/models/cvt-13_dense.py'
]

# The official CvT-13 ImageNet-1k 224 weights from the HuggingFace hub (any
# local official, HuggingFace or mmcvt checkpoint works here too).
pretrained = 'hf://microsoft/cvt-13'

model = dict(
    backbone=dict(
        _base_.cvt_backbone,
        _delete_=True,
        # fixed 512x512 crops, 16 per step: the projections' BatchNorms train
        # (synchronised across GPUs by `sync_bn` below), as mmseg does for
        # BatchNorm backbones
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    # UPerHead: PPM on the stride-16 map, FPN fusion of strides 4, 8, 16
    decode_head=dict(in_channels=[64, 192, 384], in_index=[0, 1, 2]),
    auxiliary_head=dict(in_channels=384, in_index=2))

# the total batch the learning rate is set for (8 GPUs x 2 crops); used by
# `tools/train.py --auto-scale-lr` on other GPU counts
auto_scale_lr = dict(enable=False, base_batch_size=16)

# distributed runs turn every BatchNorm (the backbone's too) into SyncBN
sync_bn = 'torch'

# the no-decay rules replace the Swin-specific keys of the base
optim_wrapper = dict(
    paramwise_cfg=dict(_base_.cvt_paramwise_cfg, _delete_=True))
