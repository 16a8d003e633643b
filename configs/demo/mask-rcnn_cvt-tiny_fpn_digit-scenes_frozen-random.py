# Control: the CvT frozen at its random initialisation (all three stages and
# their output norms), only the neck and the heads train: what the backbone
# adds is the gap to the other two runs.
_base_ = ['./mask-rcnn_cvt-tiny_fpn_digit-scenes_scratch.py']

model = dict(backbone=dict(frozen_stages=3))
