# CvT-W24 (wide, 277M parameters): 1024-d stage-3 class token.
_base_ = './cvt-13.py'

model = dict(backbone=dict(arch='w24'), head=dict(in_channels=1024))
