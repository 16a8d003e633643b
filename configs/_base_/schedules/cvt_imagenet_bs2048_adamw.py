# CvT-13 ImageNet schedule, as the official code ran it
# (experiments/imagenet/cvt/cvt-13-224x224.yaml): per-GPU lr 2.5e-4 x 8 GPUs
# (TRAIN.SCALE_LR) = 2e-3 at 8 x 256 = total batch 2048 (the paper's 0.02 is
# not what the code uses), weight decay 0.05. Everything else as in
# cvt_imagenet_bs1024_adamw.py.
_base_ = './cvt_imagenet_bs1024_adamw.py'

lr = 2.5e-4 * 8
optim_wrapper = dict(optimizer=dict(lr=lr, weight_decay=0.05))
# same warm-up + cosine, warm-up still starting from 1e-6
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=1e-6 / lr),
    _base_.param_scheduler[1],
]
auto_scale_lr = dict(base_batch_size=2048)
