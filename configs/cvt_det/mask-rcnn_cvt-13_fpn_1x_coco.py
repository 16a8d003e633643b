# Mask R-CNN + FPN, CvT-13 backbone (ImageNet-1k weights), COCO, 1x schedule.
# Everything but the backbone, the FPN inputs and the no-decay rules is
# mmdet's Swin-T Mask R-CNN 1x recipe: AdamW lr 1e-4 / weight decay 0.05,
# 12 epochs (steps at 8 and 11, 1000-iter linear warm-up), 2 images per GPU
# x 8 GPUs, single-scale (1333, 800). Design notes: README.md.
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'

# The official CvT-13-224x224-IN-1k.pth converted to the mmpretrain layout
# ('backbone.stages.*') by tools/model_converters/cvt_to_mmcvt.py.
pretrained = 'checkpoints/cvt-13_in1k-224px.pth'

model = dict(
    backbone=dict(
        _delete_=True,
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
        # 2 images per GPU: keep the ImageNet statistics of the BatchNorms
        # in the convolutional q/k/v projections (affine params still train)
        norm_eval=True,
        with_cp=False,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    # three inputs (strides 4, 8, 16); P5 (stride 32) and P6 (stride 64) come
    # from stride-2 3x3 convs on the FPN output, so the RPN anchors
    # (strides 4..64) and the RoI extractor (strides 4..32) are unchanged
    neck=dict(
        in_channels=[64, 192, 384], num_outs=5, add_extra_convs='on_output'))

# no weight decay on norms (LayerNorm and the projections' BatchNorm),
# biases, the class token and position embeddings, as in CvT's ImageNet
# training (the Swin-specific keys of the base are deleted)
optim_wrapper = dict(
    paramwise_cfg=dict(
        _delete_=True,
        norm_decay_mult=0.,
        bias_decay_mult=0.,
        custom_keys={
            '.cls_token': dict(decay_mult=0.),
            '.pos_embed': dict(decay_mult=0.),
        }))
