# 10,000-iteration fine-tuning (CIFAR-10 / CIFAR-100); otherwise as
# cvt_finetune_sgd_bs512_20k.py.
_base_ = './cvt_finetune_sgd_bs512_20k.py'

max_iters = 10000
param_scheduler = [
    _base_.param_scheduler[0],
    dict(_base_.param_scheduler[1], end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=1000)
