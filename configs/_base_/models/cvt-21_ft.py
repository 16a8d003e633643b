# CvT-21 fine-tuned at 384x384 from configs/cvt/cvt-21_in21k.py
# (see cvt-13_ft.py).
_base_ = './cvt-13_ft.py'

model = dict(
    backbone=dict(
        arch='21',
        init_cfg=dict(checkpoint='work_dirs/cvt-21_in21k/epoch_300.pth')))
