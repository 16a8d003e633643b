# CvT-21: same head and regularisation as CvT-13 (see cvt-13.py).
_base_ = './cvt-13.py'

model = dict(backbone=dict(arch='21'))
