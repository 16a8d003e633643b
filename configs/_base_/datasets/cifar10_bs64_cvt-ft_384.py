# CIFAR-10 transfer at 384x384 (CvT paper, Sec. 4.4 / ViT fine-tuning): the
# official fine-tuning transform (resize to 416x416, random 384 crop, flip),
# plain 384x384 bicubic resize for testing, ImageNet normalisation (the
# pre-trained weights expect it). mmpretrain's CIFAR datasets give RGB arrays,
# so no channel flip. 8 GPUs x 64 = total batch 512.
dataset_type = 'CIFAR10'
data_preprocessor = dict(
    num_classes=10,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=False)

train_pipeline = [
    dict(
        type='Resize',
        scale=(416, 416),
        backend='pillow',
        interpolation='bilinear'),
    dict(type='RandomCrop', crop_size=384),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(
        type='Resize',
        scale=(384, 384),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=64,
    num_workers=8,
    dataset=dict(
        type=dataset_type,
        data_root='data/cifar10',
        split='train',
        pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=8,
    dataset=dict(
        type=dataset_type,
        data_root='data/cifar10',
        split='test',
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
