# The other way to feed Mask2Former CvT's three maps (README.md): no
# stride-32 level at all. The pixel decoder's deformable encoder runs on the
# stride-8 and stride-16 maps (the recipe's: 8, 16, 32), the stride-4 map
# still gives the mask features, and the masked-attention decoder cycles
# over two levels instead of three.
_base_ = ['./mask2former_cvt-tiny_digit-scenes.py']

model = dict(
    neck=None,
    decode_head=dict(
        in_channels=[32, 64, 128],
        strides=[4, 8, 16],
        num_transformer_feat_level=2,
        pixel_decoder=dict(
            num_outs=2,
            encoder=dict(layer_cfg=dict(self_attn_cfg=dict(num_levels=2))))))
