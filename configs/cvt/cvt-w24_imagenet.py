# CvT-W24 on ImageNet-1k only, 224x224, with the CvT-21 recipe (8 GPUs x 128,
# AdamW lr 1e-3, wd 0.1). The paper reports W24 only with ImageNet-22k
# pre-training (cvt-w24_in21k.py -> cvt-w24_in21k-pre_in1k-384px.py).
_base_ = [
    '../_base_/models/cvt-w24.py',
    '../_base_/datasets/imagenet_cvt-randaug_224.py',
    '../_base_/schedules/cvt_imagenet_bs1024_adamw.py',
    '../_base_/default_runtime.py',
]
train_dataloader = dict(batch_size=128)
