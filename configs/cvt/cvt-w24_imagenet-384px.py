# CvT-W24, ImageNet-1k only, at 384x384 with the CvT-21 recipe (no result in
# the paper; see cvt-w24_in21k-pre_in1k-384px.py for the reported model).
_base_ = [
    '../_base_/models/cvt-w24.py',
    '../_base_/datasets/imagenet_cvt-randaug_384.py',
    '../_base_/schedules/cvt_imagenet_bs1024_adamw.py',
    '../_base_/default_runtime.py',
]

model = dict(backbone=dict(img_size=384))
train_dataloader = dict(batch_size=128)
