# Mask2Former, CvT-21 backbone (ImageNet-1k weights), ADE20K 512x512, 160k
# iters (the recipe's larger sibling is Swin-S's, the same but for the
# backbone).
_base_ = './mask2former_cvt-13_8xb2-160k_ade20k-512x512.py'

pretrained = 'hf://microsoft/cvt-21'

model = dict(
    backbone=dict(arch='21', init_cfg=dict(checkpoint=pretrained)))
