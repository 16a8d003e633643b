# Table 5 (c): CvT-13 with a learnable absolute position embedding added in
# every stage (81.5 top-1; Table 6 (c) reports 81.4 for the same setting).
# Row (f), no position embedding, is the default CvT-13
# (../cvt/cvt-13_imagenet.py, 81.6).
_base_ = '../cvt/cvt-13_imagenet.py'

model = dict(backbone=dict(pos_embed=True))
