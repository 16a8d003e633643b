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
