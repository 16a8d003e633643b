# Oxford-IIIT Pets transfer at 384x384, trained on `trainval`, evaluated on
# `test` (the standard BiT/ViT protocol). Same transforms as CIFAR
# (cifar10_bs64_cvt-ft_384.py), images read from files (BGR -> RGB).
_base_ = './cifar10_bs64_cvt-ft_384.py'

dataset_type = 'OxfordIIITPet'
data_preprocessor = dict(num_classes=37, to_rgb=True)

train_pipeline = [dict(type='LoadImageFromFile')] + _base_.train_pipeline
test_pipeline = [dict(type='LoadImageFromFile')] + _base_.test_pipeline

train_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        data_root='data/Oxford-IIIT_Pets',
        split='trainval',
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        data_root='data/Oxford-IIIT_Pets',
        split='test',
        pipeline=test_pipeline))
test_dataloader = val_dataloader
