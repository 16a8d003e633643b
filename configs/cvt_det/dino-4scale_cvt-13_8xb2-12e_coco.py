# DINO (4 scales) with a CvT-13 backbone (ImageNet-1k weights), COCO, 12
# epochs. Everything but the backbone, the ChannelMapper inputs and the
# backbone's parameter rules is mmdet's DINO-4scale R50 recipe: 900 queries,
# 6 + 6 deformable encoder / decoder layers, contrastive denoising, DETR-style
# multi-scale resize or resize + crop + resize (shorter side 480-800), AdamW
# lr 1e-4 / weight decay 1e-4 with the backbone at 0.1x lr, gradient clipping
# at 0.1, 12 epochs (step at 11), 2 images per GPU x 8 GPUs. The CvT settings
# shared with the other det / seg configs: ../_base_/models/cvt-13_dense.py.
# Design notes: README.md.
_base_ = [
    'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
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
    # The four levels of the deformable attention: the three CvT maps
    # (strides 4, 8, 16) and a stride-32 one from ChannelMapper's extra
    # stride-2 3x3 conv on the stride-16 map. The recipe's R50 gives strides
    # 8..64 (C3-C5 + an extra conv); CvT has no stride-32 stage, and the
    # stride-4 map is kept rather than a second extra conv (strides 8..64):
    # the digit-scene comparison of the two is in README.md.
    neck=dict(in_channels=[64, 192, 384], num_outs=4))

# the recipe's parameter rules (backbone at 0.1x lr) plus CvT's no-decay
# parameters: in mmengine a custom key replaces norm_decay_mult, so they are
# named (see _base_/models/cvt-13_dense.py)
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys=_base_.cvt_backbone_lr01_keys))
