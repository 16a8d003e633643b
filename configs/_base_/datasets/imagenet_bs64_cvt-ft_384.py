# ImageNet-1k fine-tuning at 384x384 (from ImageNet-22k pre-training).
#
# Official fine-tuning transform (lib/dataset/transformas/build.py with
# FINETUNE.FINETUNE and not FINETUNE.USE_TRAIN_AUG): resize to
# (384 + 32) x (384 + 32) with AUG.INTERPOLATION (default 2 = bilinear),
# random 384 crop, horizontal flip; no RandAugment / erasing / Mixup.
# Test: plain 384x384 bicubic resize, no crop.
# 8 GPUs x 64 = total batch 512 (paper, Sec. 4.1 "Fine-tuning").
_base_ = './imagenet_cvt-randaug_384.py'

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='Resize',
        scale=(416, 416),
        backend='pillow',
        interpolation='bilinear'),
    dict(type='RandomCrop', crop_size=384),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]

train_dataloader = dict(batch_size=64, dataset=dict(pipeline=train_pipeline))
