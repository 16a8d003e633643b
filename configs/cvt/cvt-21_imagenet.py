# CvT-21, ImageNet-1k, 224x224, 300 epochs: 8 GPUs x 128 (total 1024).
# Official weights: CvT-21-224x224-IN-1k.pth (82.5 top-1).
# Unlike the other recipes, the official cvt-21-224x224.yaml trains without
# timm's loader: RandomResizedCrop (bilinear) + flip only, no RandAugment or
# random erasing, with the repeated-augmentation sampler
# (imagenet_cvt-rrc-flip_224.py).
_base_ = [
    '../_base_/models/cvt-21.py',
    '../_base_/datasets/imagenet_cvt-rrc-flip_224.py',
    '../_base_/schedules/cvt_imagenet_bs1024_adamw.py',
    '../_base_/default_runtime.py',
]

train_dataloader = dict(batch_size=128)
