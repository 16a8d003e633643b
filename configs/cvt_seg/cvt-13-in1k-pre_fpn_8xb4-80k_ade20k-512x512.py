# Semantic FPN, CvT-13 backbone (ImageNet-1k weights), ADE20K 512x512, 80k
# iters: mmseg's Semantic FPN recipe for transformer backbones (PVT / Twins:
# AdamW lr 1e-4 / weight decay 1e-4, poly decay, 4 crops per GPU x 8 GPUs,
# SyncBN head). The CvT settings: ../_base_/models/cvt-13_dense.py. Design
# notes: README.md.
_base_ = [
    'mmseg::twins/twins_pcpvt-s_fpn_fpnhead_8xb4-80k_ade20k-512x512.py',
    '../_base_/models/cvt-13_dense.py'
]

# CvT-13-224x224-IN-1k.pth converted by tools/model_converters/cvt_to_mmcvt.py
pretrained = 'hf://microsoft/cvt-13'

model = dict(
    backbone=dict(
        _base_.cvt_backbone,
        _delete_=True,
        norm_eval=False,  # see the UperNet config
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    # FPNHead expects strides 4, 8, 16, 32: the stride-32 level is a
    # stride-2 3x3 conv on the FPN's stride-16 output
    neck=dict(
        in_channels=[64, 192, 384], num_outs=4, add_extra_convs='on_output'))

# the total batch the learning rate is set for (8 GPUs x 4 crops); used by
# `tools/train.py --auto-scale-lr` on other GPU counts
auto_scale_lr = dict(enable=False, base_batch_size=32)

# distributed runs turn every BatchNorm (the backbone's too) into SyncBN
sync_bn = 'torch'

optim_wrapper = dict(paramwise_cfg=_base_.cvt_paramwise_cfg)
