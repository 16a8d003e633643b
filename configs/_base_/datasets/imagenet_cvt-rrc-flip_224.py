# ImageNet-1k at 224x224 as the CvT-21 224 yaml trains
# (experiments/imagenet/cvt/cvt-21-224x224.yaml): `USE_LOADER: false` and
# `USE_TRANSFORM: false`, so lib/dataset/transformas/build.py builds
# torchvision's RandomResizedCrop(224, scale (0.08, 1), ratio (3/4, 4/3),
# interpolation AUG.INTERPOLATION = 2, bilinear) and a horizontal flip, with
# no colour jitter (COLOR_JITTER[-1], its probability, is 0), no RandAugment
# and no random erasing. `SAMPLER: repeated_aug`: the repeated-augmentation
# sampler (3 repeats, each on a different GPU; mmpretrain's RepeatAugSampler).
# Mixup / CutMix and label smoothing come from the model (cvt-21.py), as in
# the other recipes. Test: as imagenet_cvt-randaug_224.py.
_base_ = './imagenet_cvt-randaug_224.py'

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.08, 1.0),
        aspect_ratio_range=(3. / 4., 4. / 3.),
        backend='pillow',
        interpolation='bilinear'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    dataset=dict(pipeline=train_pipeline),
    sampler=dict(type='RepeatAugSampler', shuffle=True, _delete_=True))
