# Table 5 (d): position embedding in the first stage only (81.4 top-1).
_base_ = '../cvt/cvt-13_imagenet.py'

model = dict(backbone=dict(pos_embed=(True, False, False)))
