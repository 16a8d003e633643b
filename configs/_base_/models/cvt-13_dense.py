# CvT-13 as a multi-scale backbone for mmdet / mmseg: the settings that the
# configs of configs/cvt_det and configs/cvt_seg share (design notes: their
# README.md). Two bases may not set the same key, so this file sets no
# `model` or `optim_wrapper`: the configs list it next to their toolkit
# recipe and take its variables, e.g.
#     backbone=dict(_base_.cvt_backbone, _delete_=True, init_cfg=...)
# (both variables also stay in the resolved configs as top-level keys).

cvt_backbone = dict(
    type='mmcvt.CvT',
    arch='13',
    out_indices=(0, 1, 2),  # strides 4, 8, 16
    out_type='featmap',  # the last stage as an NCHW map as well
    # the class token stays in stage-3 attention (as pretrained) and is
    # dropped from the output map
    cls_token=(False, False, True),
    out_norm=True,  # a LayerNorm per output (out_norm0..2), as Swin
    drop_path_rate=0.1,  # the ImageNet recipe's
    frozen_stages=-1,
    # detection, 2 images per GPU: keep the ImageNet statistics of the
    # BatchNorms in the convolutional q/k/v projections (affine params still
    # train); the segmentation configs train them (norm_eval=False)
    norm_eval=True,
    with_cp=False)

# no weight decay on norms (LayerNorm and the projections' BatchNorm),
# biases, the class token and position embeddings, as in CvT's ImageNet
# training
cvt_paramwise_cfg = dict(
    norm_decay_mult=0.,
    bias_decay_mult=0.,
    custom_keys={
        '.cls_token': dict(decay_mult=0.),
        '.pos_embed': dict(decay_mult=0.),
    })

# The same no-decay parameters as custom keys, for the recipes that train the
# backbone at 0.1x lr through `custom_keys={'backbone': dict(lr_mult=0.1)}`
# (DINO, Mask2Former): mmengine applies only the first matching key, longest
# first, and then ignores norm_decay_mult / bias_decay_mult. So the
# backbone's norms (the blocks' LayerNorms, the embeddings' norms, out_norm*,
# the q/k/v projections' BatchNorms), class token and position embeddings
# are named by keys longer than 'backbone', at the same 0.1x lr. These
# names occur in CvT only; the config tests check that no head parameter
# matches. The backbone's biases keep the recipe's weight decay, as in
# mmseg's Swin Mask2Former config.
_cvt_no_decay = dict(lr_mult=0.1, decay_mult=0.)
cvt_backbone_lr01_keys = {
    'backbone': dict(lr_mult=0.1, decay_mult=1.0),
    **{key: _cvt_no_decay
       for key in ('.norm1.weight', '.norm1.bias', '.norm2.weight',
                   '.norm2.bias', 'patch_embed.norm.', 'backbone.out_norm',
                   'conv_proj_q.bn.', 'conv_proj_k.bn.', 'conv_proj_v.bn.',
                   '.cls_token', '.pos_embed')}
}
