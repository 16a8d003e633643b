# Semantic FPN, CvT-21 backbone (ImageNet-1k weights), ADE20K 512x512, 80k.
_base_ = './cvt-13-in1k-pre_fpn_8xb4-80k_ade20k-512x512.py'

# CvT-21-224x224-IN-1k.pth converted by tools/model_converters/cvt_to_mmcvt.py
pretrained = 'hf://microsoft/cvt-21'

model = dict(
    backbone=dict(arch='21', init_cfg=dict(checkpoint=pretrained)))
