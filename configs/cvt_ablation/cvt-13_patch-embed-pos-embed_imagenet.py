# Table 6 (b): non-overlapping patch embedding (kernel = stride, as ViT)
# with a position embedding in every stage (19.9M parameters, 81.1 top-1).
_base_ = '../cvt/cvt-13_imagenet.py'

model = dict(backbone=dict(patch_embed='patch', pos_embed=True))
