# CvT-W24 fine-tuned at 384x384 from the published ImageNet-22k model (22k
# pre-trained, already fine-tuned on 1k at 384; see cvt-13_ft.py), or from
# configs/cvt/cvt-w24_in21k.py with checkpoint='work_dirs/cvt-w24_in21k/...'.
_base_ = './cvt-13_ft.py'

model = dict(
    backbone=dict(
        arch='w24',
        init_cfg=dict(checkpoint='hf://microsoft/cvt-w24-384-22k')),
    head=dict(in_channels=1024))
