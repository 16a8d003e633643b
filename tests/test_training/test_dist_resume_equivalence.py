"""Distributed and resumed training give the weights of the plain run.

Both tests train the demo config (configs/demo/cvt-tiny_digits.py, real
digits data) through the repository's launch scripts in fresh processes.

Distributed: ``tools/dist_train.sh CONFIG 2`` (torchrun, gloo on the CPU),
2 processes x 8 images, against ``tools/train.py`` with 1 process x 16
images, same seed, deterministic algorithms. For the runs to be the same
computation:
  * the sampler is not shuffled (rank r of 2 reads images r, r+2, ..., so
    both ranks together read exactly the single process's batch), and the
    training pipeline is the deterministic test pipeline (data-loader
    workers are seeded per rank, so random crops would differ);
  * stochastic depth is off (its masks come from per-process RNG streams);
  * BatchNorm of the convolutional projections: per-rank batch statistics
    differ from those of the whole batch. `sync_bn='torch'` fixes that on
    GPUs, but torch's DistributedDataParallel refuses SyncBatchNorm in CPU
    modules ("SyncBatchNorm layers only work with GPU modules"), so here the
    BNs run with ``norm_eval=True`` (running statistics, still trained
    affine parameters), which makes them per-sample and rank-independent.
  * the optimizer is SGD (momentum 0.9) instead of the demo's AdamW: Adam
    is invariant to the gradient's scale (a DDP that summed instead of
    averaged would pass) and turns float noise on exactly-zero gradients
    (e.g. the key biases, to which softmax attention is invariant) into
    lr-sized steps (observed 1e-5 after 6 steps), while SGD keeps float
    noise at float-noise size (observed 2e-7).
DDP averages the ranks' gradients, i.e. the gradient of the mean loss over
the 16 images, so the updates agree up to float summation order.

Resume: a 2-epoch run against a run stopped after epoch 1 and continued
with ``tools/train.py --resume <epoch_1.pth>``; random crops stay on (the
workers are re-seeded identically every epoch without persistent workers)
and only stochastic depth is off, since RNG streams are not checkpointed.
"""
import os.path as osp
import socket

from _cvt_train_utils import (
    CONFIG_DIR,
    PYTHON,
    load_state,
    max_abs_diff,
    run_tool,
)

DEMO = osp.join(CONFIG_DIR, 'demo', 'cvt-tiny_digits.py')

# the two ranks hold bit-identical weights (DDP broadcasts the initial
# weights and all-reduces gradients)
RANK_TOL = 0.0
# 2 processes vs 1 process after ITERS SGD steps: only the float summation
# order of the gradient differs (observed ~2e-7; the weights move ~0.6)
DIST_TOL = 1e-5
# resumed vs uninterrupted: identical computation on the CPU (observed 0)
RESUME_TOL = 1e-6
ITERS = 6


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _write_cfg(path, digits_root, extra, backbone=''):
    """A config inheriting the demo config: its data at ``digits_root``,
    stochastic depth off, deterministic algorithms, plus ``extra``."""
    with open(path, 'w') as f:
        f.write(f"""_base_ = [{DEMO!r}]
model = dict(
    backbone=dict(arch=dict(drop_path_rates=[0., 0., 0.]), {backbone}))
randomness = dict(seed=0, deterministic=True)
train_dataloader = dict()
val_dataloader = dict()
""" + extra + f"""
# the data set of this test, whatever ``extra`` set for the loaders
data_root = {digits_root!r}
train_dataloader.setdefault('dataset', dict())['data_root'] = data_root
val_dataloader.setdefault('dataset', dict())['data_root'] = data_root
test_dataloader = val_dataloader
""")
    return str(path)


DIST_EXTRA = f"""
custom_imports = dict(imports=['_cvt_rank_dump_hook'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='DumpRankWeightsHook')]
optim_wrapper = dict(optimizer=dict(
    _delete_=True, type='SGD', lr=0.1, momentum=0.9, weight_decay=0.05))
train_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(pipeline=_base_.test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_dataloader = dict(num_workers=0, persistent_workers=False)
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop',
                 max_iters={ITERS}, val_interval={ITERS})
param_scheduler = [dict(type='LinearLR', start_factor=0.25, by_epoch=False,
                        begin=0, end={ITERS})]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval={ITERS}))
log_processor = dict(by_epoch=False)
"""


def test_two_processes_match_one(digits_root, tmp_path):
    cfg = _write_cfg(tmp_path / 'dist_cfg.py', digits_root, DIST_EXTRA,
                     backbone='norm_eval=True')
    two, one = str(tmp_path / 'two'), str(tmp_path / 'one')
    out = run_tool(
        [
            'bash', 'tools/dist_train.sh', cfg, '2', '--work-dir', two,
            '--cfg-options', 'train_dataloader.batch_size=8',
            'env_cfg.dist_cfg.backend=gloo'
        ],
        env=dict(PORT=str(_free_port())))
    assert 'Distributed training: True' in out
    run_tool([
        PYTHON, 'tools/train.py', cfg, '--work-dir', one, '--cfg-options',
        'train_dataloader.batch_size=16'
    ])
    rank0 = load_state(osp.join(two, 'rank0.pth'))
    rank1 = load_state(osp.join(two, 'rank1.pth'))
    single = load_state(osp.join(one, 'rank0.pth'))
    diff, key = max_abs_diff(rank0, rank1)
    assert diff <= RANK_TOL, f'ranks differ by {diff} at {key}'
    diff, key = max_abs_diff(rank0, single)
    assert diff <= DIST_TOL, f'2 processes vs 1 differ by {diff} at {key}'
    # both started from the same weights, and training moved them far more
    # than the tolerance: the comparison is not vacuous
    init = load_state(osp.join(one, 'rank0_init.pth'))
    assert max_abs_diff(init, load_state(osp.join(two, 'rank0_init.pth')))[
        0] == 0.0
    assert max_abs_diff(init, single)[0] > 100 * DIST_TOL
    # and the checkpoint rank 0 saved is the trained model
    saved = load_state(osp.join(two, f'iter_{ITERS}.pth'))
    assert max_abs_diff(saved, rank0)[0] == 0.0


RESUME_EXTRA = """
train_dataloader = dict(
    num_workers=1, persistent_workers=False,
    dataset=dict(indices=160))   # 5 iterations per epoch
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(indices=64))
default_hooks = dict(checkpoint=dict(max_keep_ckpts=-1, save_best=None))
"""


def test_resume_matches_uninterrupted(digits_root, tmp_path):
    cfg = _write_cfg(tmp_path / 'resume_cfg.py', digits_root, RESUME_EXTRA)
    full, part = str(tmp_path / 'full'), str(tmp_path / 'part')
    run_tool([
        PYTHON, 'tools/train.py', cfg, '--work-dir', full, '--cfg-options',
        'train_cfg.max_epochs=2'
    ])
    run_tool([
        PYTHON, 'tools/train.py', cfg, '--work-dir', part, '--cfg-options',
        'train_cfg.max_epochs=1'
    ])
    out = run_tool([
        PYTHON, 'tools/train.py', cfg, '--work-dir', part, '--resume',
        osp.join(part, 'epoch_1.pth'), '--cfg-options',
        'train_cfg.max_epochs=2'
    ])
    assert 'resumed epoch: 1, iter: 5' in out  # 160 images / batch 32
    a = load_state(osp.join(full, 'epoch_2.pth'))
    b = load_state(osp.join(part, 'epoch_2.pth'))
    diff, key = max_abs_diff(a, b)
    assert diff <= RESUME_TOL, f'resumed run differs by {diff} at {key}'
    # and epoch 1 -> 2 changed the weights (the check is not vacuous)
    e1 = load_state(osp.join(part, 'epoch_1.pth'))
    assert max_abs_diff(e1, b)[0] > 1e-4
