# Mask R-CNN + FPN, CvT-13 backbone, COCO, 3x schedule with multi-scale
# training: mmdet's Swin-T Mask R-CNN 3x recipe (DETR-style random resize,
# shorter side 480-800, or resize + random crop + resize; 36 epochs, steps
# at 27 and 33; AdamW lr 1e-4 / weight decay 0.05). The CvT part is the same
# as in mask-rcnn_cvt-13_fpn_1x_coco.py; design notes: README.md.
_base_ = [
    'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py',
    '../_base_/models/cvt-13_dense.py'
]

# CvT-13-224x224-IN-1k.pth converted by tools/model_converters/cvt_to_mmcvt.py
pretrained = 'hf://microsoft/cvt-13'

model = dict(
    backbone=dict(
        _base_.cvt_backbone,
        _delete_=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(
        in_channels=[64, 192, 384], num_outs=5, add_extra_convs='on_output'))

optim_wrapper = dict(
    paramwise_cfg=dict(_base_.cvt_paramwise_cfg, _delete_=True))
