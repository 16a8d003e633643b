# CvT-W24 fine-tuned at 384x384 from configs/cvt/cvt-w24_in21k.py
# (see cvt-13_ft.py).
_base_ = './cvt-13_ft.py'

model = dict(
    backbone=dict(
        arch='w24',
        init_cfg=dict(checkpoint='work_dirs/cvt-w24_in21k/epoch_300.pth')),
    head=dict(in_channels=1024))
