# Control: the same job with the CvT trained from its random initialisation
# instead of the digits classifier.
_base_ = ['./mask-rcnn_cvt-tiny_fpn_digit-scenes.py']

model = dict(backbone=dict(init_cfg=None))
