# Table 6 (a): non-overlapping patch embedding (kernel = stride, as ViT)
# instead of the convolutional token embedding, no position embedding
# (19.5M parameters, 80.7 top-1). Row (d), convolutional token embedding
# without position embedding, is the default CvT-13 (81.6).
_base_ = '../cvt/cvt-13_imagenet.py'

model = dict(backbone=dict(patch_embed='patch'))
