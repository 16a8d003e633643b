# Mask R-CNN + FPN, CvT-21 backbone (ImageNet-1k weights), COCO, 1x schedule.
_base_ = './mask-rcnn_cvt-13_fpn_1x_coco.py'

# CvT-21-224x224-IN-1k.pth converted by tools/model_converters/cvt_to_mmcvt.py
pretrained = 'hf://microsoft/cvt-21'

model = dict(
    backbone=dict(arch='21', init_cfg=dict(checkpoint=pretrained)))
