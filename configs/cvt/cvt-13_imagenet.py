# CvT-13, ImageNet-1k, 224x224, 300 epochs: 8 GPUs x 256 (total 2048).
# Official weights: CvT-13-224x224-IN-1k.pth (81.6 top-1).
_base_ = [
    '../_base_/models/cvt-13.py',
    '../_base_/datasets/imagenet_cvt-randaug_224.py',
    '../_base_/schedules/cvt_imagenet_bs2048_adamw.py',
    '../_base_/default_runtime.py',
]

train_dataloader = dict(batch_size=256)
