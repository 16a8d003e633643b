# CvT-21, ImageNet-1k, trained and tested at 384x384 with the 224 recipe
# (cvt-21_imagenet.py). Official weights: CvT-21-384x384-IN-1k.pth (83.3).
_base_ = [
    '../_base_/models/cvt-21.py',
    '../_base_/datasets/imagenet_cvt-randaug_384.py',
    '../_base_/schedules/cvt_imagenet_bs1024_adamw.py',
    '../_base_/default_runtime.py',
]

model = dict(backbone=dict(img_size=384))
train_dataloader = dict(batch_size=128)
