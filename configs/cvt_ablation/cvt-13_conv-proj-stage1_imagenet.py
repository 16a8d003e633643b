# Table 8 (b): convolutional projection in stage 1 only, linear projection
# in stages 2 and 3 (80.8 top-1).
_base_ = '../cvt/cvt-13_imagenet.py'

model = dict(backbone=dict(qkv_proj=('dw_bn', 'linear', 'linear')))
