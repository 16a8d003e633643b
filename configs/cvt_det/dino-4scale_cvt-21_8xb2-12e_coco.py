# DINO (4 scales) with a CvT-21 backbone (ImageNet-1k weights), COCO, 12
# epochs (the recipe's larger sibling is Swin-L's, 5 scales; CvT-21 keeps the
# 4 levels of the CvT-13 config).
_base_ = './dino-4scale_cvt-13_8xb2-12e_coco.py'

pretrained = 'hf://microsoft/cvt-21'

model = dict(
    backbone=dict(arch='21', init_cfg=dict(checkpoint=pretrained)))
