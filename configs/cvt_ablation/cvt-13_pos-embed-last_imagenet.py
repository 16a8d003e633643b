# Table 5 (e): position embedding in the last stage only (81.4 top-1).
_base_ = '../cvt/cvt-13_imagenet.py'

model = dict(backbone=dict(pos_embed=(False, False, True)))
