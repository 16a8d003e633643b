# mmpretrain's default runtime (default_scope='mmpretrain', logging,
# per-epoch checkpoints, visualiser); we only keep the last 3 checkpoints and
# additionally the best one by validation accuracy.
_base_ = 'mmpretrain::_base_/default_runtime.py'

default_hooks = dict(
    checkpoint=dict(max_keep_ckpts=3, save_best='auto'),
    logger=dict(interval=100))
