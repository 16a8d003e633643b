# Cascade Mask R-CNN + FPN, CvT-21 backbone (ImageNet-1k weights), COCO, 3x
# multi-scale schedule (the recipe's larger sibling is ConvNeXt-S's, the
# same but for the backbone).
_base_ = './cascade-mask-rcnn_cvt-13_fpn_ms-crop-3x_coco.py'

pretrained = 'hf://microsoft/cvt-21'

model = dict(
    backbone=dict(arch='21', init_cfg=dict(checkpoint=pretrained)))
