# Runtime for iteration-based runs (the fine-tuning schedules): checkpoints
# and logs counted in iterations; the last iteration is always saved.
_base_ = './default_runtime.py'

default_hooks = dict(checkpoint=dict(by_epoch=False, interval=1000))
log_processor = dict(by_epoch=False)
