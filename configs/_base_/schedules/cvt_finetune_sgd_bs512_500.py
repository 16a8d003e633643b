# 500-iteration fine-tuning (Oxford-IIIT Pets / Flowers-102); otherwise as
# cvt_finetune_sgd_bs512_20k.py, with the warm-up shortened to 50 iterations
# (10% of the run; our choice, not given by the paper).
_base_ = './cvt_finetune_sgd_bs512_20k.py'

max_iters = 500
warmup_iters = 50
param_scheduler = [
    dict(_base_.param_scheduler[0], end=warmup_iters),
    dict(_base_.param_scheduler[1], begin=warmup_iters, end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=100)
