# Cascade Mask R-CNN + FPN, CvT-13 backbone (ImageNet-1k weights), COCO, 3x
# schedule with multi-scale training. Everything but the backbone, the FPN
# inputs and the optimizer's parameter rules is mmdet's ConvNeXt-T Cascade
# Mask R-CNN 3x recipe: three cascade stages with 4conv1fc box heads (SyncBN)
# and GIoU loss, DETR-style multi-scale resize or resize + crop + resize
# (shorter side 480-800), 36 epochs (steps at 27 and 33, 1000-iter linear
# warm-up), AdamW lr 2e-4 / weight decay 0.05, mixed precision, 2 images per
# GPU x 8 GPUs. The CvT settings shared with the other det / seg configs:
# ../_base_/models/cvt-13_dense.py. Design notes: README.md.
_base_ = [
    'mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py',  # noqa
    '../_base_/models/cvt-13_dense.py'
]

# the recipe imports mmpretrain for its ConvNeXt; the CvT needs nothing
custom_imports = dict(imports=[], allow_failed_imports=False)

# The official CvT-13 ImageNet-1k 224 weights from the HuggingFace hub (any
# local official, HuggingFace or mmcvt checkpoint works here too).
pretrained = 'hf://microsoft/cvt-13'

model = dict(
    backbone=dict(
        _base_.cvt_backbone,
        _delete_=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    # the missing stride-32 level, as in the Mask R-CNN configs: P5 (stride
    # 32) and P6 (64) are stride-2 3x3 convs on the FPN output, so the RPN
    # anchors (strides 4..64) and the RoI extractors (4..32) are the
    # recipe's
    neck=dict(
        in_channels=[64, 192, 384], num_outs=5, add_extra_convs='on_output'))

# the recipe's AdamW (lr 2e-4, weight decay 0.05) and mixed precision; its
# layer-wise lr decay (mmdet's LearningRateDecayOptimizerConstructor) reads
# ConvNeXt's parameter names only, so the CvT no-decay rules replace it
optim_wrapper = dict(
    constructor='DefaultOptimWrapperConstructor',
    paramwise_cfg=dict(_base_.cvt_paramwise_cfg, _delete_=True))

# the total batch the learning rate is set for (8 GPUs x 2 images); used by
# `tools/train.py --auto-scale-lr` on other GPU counts
auto_scale_lr = dict(enable=False, base_batch_size=16)
