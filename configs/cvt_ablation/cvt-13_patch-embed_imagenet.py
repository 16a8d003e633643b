# Table 6 (b): non-overlapping patch embedding, no position embedding
# (79.6 top-1). Row (d), convolutional token embedding without position
# embedding, is the default CvT-13 (81.6).
_base_ = '../cvt/cvt-13_imagenet.py'

model = dict(backbone=dict(patch_embed='patch'))
