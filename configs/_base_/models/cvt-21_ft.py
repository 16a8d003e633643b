# CvT-21 fine-tuned at 384x384 from the published ImageNet-22k model (22k
# pre-trained, already fine-tuned on 1k at 384; see cvt-13_ft.py), or from
# configs/cvt/cvt-21_in21k.py with checkpoint='work_dirs/cvt-21_in21k/...'.
_base_ = './cvt-13_ft.py'

model = dict(
    backbone=dict(
        arch='21',
        init_cfg=dict(checkpoint='hf://microsoft/cvt-21-384-22k')))
