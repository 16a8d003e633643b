# Mask R-CNN + FPN, CvT-13 backbone (ImageNet-1k weights), COCO, 1x schedule.
# Everything but the backbone, the FPN inputs and the no-decay rules is
# mmdet's Swin-T Mask R-CNN 1x recipe: AdamW lr 1e-4 / weight decay 0.05,
# 12 epochs (steps at 8 and 11, 1000-iter linear warm-up), 2 images per GPU
# x 8 GPUs, single-scale (1333, 800). The CvT settings shared with the other
# det / seg configs: ../_base_/models/cvt-13_dense.py. Design notes:
# README.md.
_base_ = [
    'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py',
    '../_base_/models/cvt-13_dense.py'
]

# The official CvT-13 ImageNet-1k 224 weights from the HuggingFace hub (any
# local official, HuggingFace or mmcvt checkpoint works here too).
pretrained = 'hf://microsoft/cvt-13'

model = dict(
    backbone=dict(
        _base_.cvt_backbone,
        _delete_=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    # three inputs (strides 4, 8, 16); P5 (stride 32) and P6 (stride 64) come
    # from stride-2 3x3 convs on the FPN output, so the RPN anchors
    # (strides 4..64) and the RoI extractor (strides 4..32) are unchanged
    neck=dict(
        in_channels=[64, 192, 384], num_outs=5, add_extra_convs='on_output'))

# the no-decay rules replace the Swin-specific keys of the base
optim_wrapper = dict(
    paramwise_cfg=dict(_base_.cvt_paramwise_cfg, _delete_=True))
