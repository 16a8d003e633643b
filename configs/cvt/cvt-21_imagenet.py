# CvT-21, ImageNet-1k, 224x224, 300 epochs: 8 GPUs x 128 (total 1024).
# Official weights: CvT-21-224x224-IN-1k.pth (82.5 top-1).
_base_ = [
    '../_base_/models/cvt-21.py',
    '../_base_/datasets/imagenet_bs128_cvt_224.py',
    '../_base_/schedules/cvt_imagenet_bs1024_adamw.py',
    '../_base_/default_runtime.py',
]

sync_bn = 'torch'
