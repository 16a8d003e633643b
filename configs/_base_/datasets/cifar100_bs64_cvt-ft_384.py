# CIFAR-100 transfer at 384x384: as CIFAR-10 (cifar10_bs64_cvt-ft_384.py).
_base_ = './cifar10_bs64_cvt-ft_384.py'

dataset_type = 'CIFAR100'
data_preprocessor = dict(num_classes=100)
train_dataloader = dict(
    dataset=dict(type=dataset_type, data_root='data/cifar100'))
val_dataloader = dict(
    dataset=dict(type=dataset_type, data_root='data/cifar100'))
test_dataloader = val_dataloader
