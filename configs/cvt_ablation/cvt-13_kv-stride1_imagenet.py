# Table 7: convolutional projection with stride 1 for keys and values
# (82.3 top-1 at 6.55 GFLOPs, vs. the default stride 2: 81.6 at 4.53).
_base_ = '../cvt/cvt-13_imagenet.py'

model = dict(backbone=dict(stride_kv=1))
