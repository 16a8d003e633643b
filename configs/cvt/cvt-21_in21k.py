# CvT-21 pre-training on ImageNet-22k with the CvT-21 ImageNet-1k recipe
# (see cvt-13_in21k.py).
_base_ = [
    '../_base_/models/cvt-21.py',
    '../_base_/datasets/imagenet21k_cvt-randaug_224.py',
    '../_base_/schedules/cvt_imagenet_bs1024_adamw.py',
    '../_base_/default_runtime.py',
]

model = dict(head=dict(num_classes=21841))
train_dataloader = dict(batch_size=128)
