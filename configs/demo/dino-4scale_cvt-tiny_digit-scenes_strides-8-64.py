# The other way to give DINO four levels (README.md): the recipe's strides
# 8-64, from the stride-8 and stride-16 CvT maps and two extra convs of
# ChannelMapper, instead of the stride-4, 8, 16 maps and one extra conv.
_base_ = ['./dino-4scale_cvt-tiny_digit-scenes.py']

model = dict(
    backbone=dict(out_indices=(1, 2)), neck=dict(in_channels=[64, 128]))
