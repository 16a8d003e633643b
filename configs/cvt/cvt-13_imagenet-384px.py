# CvT-13, ImageNet-1k, trained and tested at 384x384 with the 224 recipe
# (cvt-13_imagenet.py); tested with a plain 384x384 resize, no crop.
# Official weights: CvT-13-384x384-IN-1k.pth (83.0 top-1).
_base_ = [
    '../_base_/models/cvt-13.py',
    '../_base_/datasets/imagenet_cvt-randaug_384.py',
    '../_base_/schedules/cvt_imagenet_bs2048_adamw.py',
    '../_base_/default_runtime.py',
]

model = dict(backbone=dict(img_size=384))
train_dataloader = dict(batch_size=256)
