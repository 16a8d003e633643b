# ImageNet-1k at 224x224 with timm's training loader, as the CvT-13 (224,
# 384), CvT-21 384 and CvT-W24 384 yamls train (`AUG.TIMM_AUG.USE_LOADER:
# true`). CvT-21 at 224 does not: see imagenet_cvt-rrc-flip_224.py.
#
# timm 0.3.2's loader with `auto_augment='rand-m9-mstd0.5-inc1'`,
# `re_prob=0.25, re_mode='pixel'`, bicubic RandomResizedCrop, hflip 0.5 and
# `COLOR_JITTER: 0.4`. In timm, colour jitter is only applied when no
# auto-augment policy is given, so with RandAugment on, the 0.4 colour jitter
# of the yaml is never used; this is exactly mmpretrain's Swin/DeiT pipeline,
# inherited unchanged.
# Test: short side resized to 256 (bicubic, = 224 / 0.875), centre crop 224.
# The per-GPU training batch is set by each config (the yamls' 256 for
# CvT-13, 128 for CvT-21 and W24).
_base_ = 'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py'

train_dataloader = dict(num_workers=8)
val_dataloader = dict(batch_size=64, num_workers=8)
test_dataloader = val_dataloader
