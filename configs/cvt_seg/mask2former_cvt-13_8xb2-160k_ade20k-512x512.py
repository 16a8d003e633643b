# Mask2Former, CvT-13 backbone (ImageNet-1k weights), ADE20K 512x512, 160k
# iters. Everything but the backbone, the neck that makes its stride-32
# level and the backbone's parameter rules is mmseg's Swin-T Mask2Former
# recipe: 100 queries, a 6-layer deformable-attention pixel decoder on
# strides 8-32 with the stride-4 map for the masks, 9 masked-attention
# decoder layers, AdamW lr 1e-4 / weight decay 0.05 with the backbone at 0.1x
# lr, gradient clipping at 0.01, poly decay, 2 crops per GPU x 8 GPUs. The
# CvT settings shared with the other det / seg configs:
# ../_base_/models/cvt-13_dense.py. Design notes: README.md.
_base_ = [
    'mmseg::mask2former/mask2former_swin-t_8xb2-160k_ade20k-512x512.py',
    '../_base_/models/cvt-13_dense.py'
]

# The official CvT-13 ImageNet-1k 224 weights from the HuggingFace hub (any
# local official, HuggingFace or mmcvt checkpoint works here too).
pretrained = 'hf://microsoft/cvt-13'

model = dict(
    backbone=dict(
        _base_.cvt_backbone,
        _delete_=True,
        norm_eval=False,  # see the UperNet config
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    # The pixel decoder takes strides 4, 8, 16 and 32, as from Swin. CvT's
    # three maps (4, 8, 16) and a stride-32 one from a stride-2 3x3 conv on
    # the stride-16 map: mmdet's ChannelMapper, as in the DINO config (its
    # 1x1 convs + GroupNorm bring every level to 256 channels; the decoder's
    # own input projections follow). The digit-scene comparison with a
    # 3-level decoder (no stride-32 level) is in README.md.
    neck=dict(
        type='mmdet.ChannelMapper',
        in_channels=[64, 192, 384],
        kernel_size=1,
        out_channels=256,
        act_cfg=None,
        norm_cfg=dict(type='GN', num_groups=32),
        num_outs=4),
    decode_head=dict(in_channels=[256, 256, 256, 256]))

# distributed runs turn every BatchNorm (the backbone's too) into SyncBN
sync_bn = 'torch'

# the recipe's parameter rules (backbone at 0.1x lr; queries and level
# embeddings without decay) with CvT's no-decay parameters in place of
# Swin's (see ../_base_/models/cvt-13_dense.py)
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys=dict(
            _base_.cvt_backbone_lr01_keys,
            query_embed=dict(lr_mult=1.0, decay_mult=0.0),
            query_feat=dict(lr_mult=1.0, decay_mult=0.0),
            level_embed=dict(lr_mult=1.0, decay_mult=0.0)),
        _delete_=True,
        norm_decay_mult=0.0))
