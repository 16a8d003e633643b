# RetinaNet + FPN, CvT-13 backbone (ImageNet-1k weights), COCO, 1x schedule
# (mmdet's RetinaNet 1x: 12 epochs, steps at 8 and 11, 2 images per GPU x 8
# GPUs) with AdamW lr 1e-4 / weight decay 0.05 as for the Mask R-CNN configs.
# The CvT settings: ../_base_/models/cvt-13_dense.py. Design notes: README.md.
_base_ = [
    'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
    '../_base_/models/cvt-13_dense.py'
]

# CvT-13-224x224-IN-1k.pth converted by tools/model_converters/cvt_to_mmcvt.py
pretrained = 'hf://microsoft/cvt-13'

model = dict(
    backbone=dict(
        _base_.cvt_backbone,
        _delete_=True,
        # RetinaNet uses P3-P7 (strides 8..128): stages 2 and 3 only, so no
        # stride-4 output (nor its out_norm) is left unused
        out_indices=(1, 2),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    # P3, P4 from the backbone (strides 8, 16); P5, P6, P7 (32, 64, 128) from
    # stride-2 convs starting on the stride-16 backbone map, as ResNet's C5 ->
    # P6 in the R50 config; the anchor strides [8, 16, 32, 64, 128] hold
    neck=dict(
        in_channels=[192, 384],
        start_level=0,
        add_extra_convs='on_input',
        num_outs=5))

optim_wrapper = dict(
    optimizer=dict(
        _delete_=True,
        type='AdamW',
        lr=0.0001,
        betas=(0.9, 0.999),
        weight_decay=0.05),
    paramwise_cfg=_base_.cvt_paramwise_cfg)
