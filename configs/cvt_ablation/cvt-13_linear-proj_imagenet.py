# Table 8 (a): linear (position-wise) projection for query, key and value
# in all three stages instead of the convolutional projection (80.6 top-1).
_base_ = '../cvt/cvt-13_imagenet.py'

model = dict(backbone=dict(qkv_proj='linear'))
