# Table 6 (a): non-overlapping patch embedding (kernel = stride, as ViT)
# instead of the convolutional token embedding, with position embeddings in
# every stage (80.7 top-1).
_base_ = '../cvt/cvt-13_imagenet.py'

model = dict(backbone=dict(patch_embed='patch', pos_embed=True))
