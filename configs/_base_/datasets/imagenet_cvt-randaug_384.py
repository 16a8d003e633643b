# ImageNet-1k at 384x384: the 224 training augmentation at 384, and for
# testing a plain 384x384 bicubic resize without cropping (the official 384
# models are evaluated with `CENTER_CROP: false`).
_base_ = './imagenet_cvt-randaug_224.py'

train_pipeline = [
    dict(t, scale=384) if t['type'] == 'RandomResizedCrop' else t
    for t in _base_.train_pipeline
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='Resize',
        scale=(384, 384),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='PackInputs'),
]

train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
