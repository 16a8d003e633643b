"""Training curves from mmengine's scalar logs.

Every run that keeps mmengine's ``LocalVisBackend`` (the toolkits' default
runtimes do) writes ``<work_dir>/<timestamp>/vis_data/scalars.json``: one
JSON object a line, the training ones with ``loss`` and ``step`` (the
iteration), the validation ones with the metrics and ``step`` (the
iteration of an iteration-based run, the epoch of an epoch-based one). This
module reads them back and draws, for one or more runs on one figure, the
training loss and a validation metric against the iteration.
"""
import glob
import json
import os.path as osp
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

# the metric drawn by default: the first of these that a run logs
DEFAULT_METRICS = ('mIoU', 'coco/bbox_mAP', 'coco/segm_mAP',
                   'accuracy/top1')


@dataclass
class Curves:
    """One run's curves, every x an iteration.

    Args:
        name (str): The run's label.
        loss_x / loss (List[float]): Training loss at the logged iterations.
        val_x (List[float]): Iterations of the validations.
        val (dict): Metric name -> values at ``val_x``.
    """
    name: str
    loss_x: List[float] = field(default_factory=list)
    loss: List[float] = field(default_factory=list)
    val_x: List[float] = field(default_factory=list)
    val: dict = field(default_factory=dict)


def scalars_file(work_dir: str) -> str:
    """The ``scalars.json`` of the newest run in ``work_dir`` that trained
    (``tools/test.py`` runs in the same folder write ones without a loss)."""
    found = sorted(
        glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')),
        reverse=True)
    for path in found:
        with open(path) as f:
            if any('"loss"' in line for line in f):
                return path
    raise FileNotFoundError(
        f'no training log in {work_dir}: expected '
        f'{work_dir}/<timestamp>/vis_data/scalars.json with a loss (written '
        'by mmengine\'s LocalVisBackend during tools/train.py)')


def _iters_per_epoch(train: List[dict]) -> Optional[float]:
    """An epoch-based run's epoch length: its loss is logged at the same
    inner iterations of every epoch, so the first logs of two epochs are
    whole epochs apart. ``None`` with a single epoch."""
    first = {}
    for rec in train:
        first.setdefault(rec['epoch'], rec['step'])
    if len(first) < 2:
        return None
    lo, hi = min(first), max(first)
    return (first[hi] - first[lo]) / (hi - lo)


def read_curves(work_dir: str, name: Optional[str] = None) -> Curves:
    """The curves of the newest training run in ``work_dir``.

    Args:
        work_dir (str): A ``tools/train.py`` work dir.
        name (str, optional): The label. Defaults to the folder's name.
    """
    path = scalars_file(work_dir)
    train, val = [], []
    with open(path) as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                (train if 'loss' in rec else val).append(rec)
    curves = Curves(name or osp.basename(osp.normpath(work_dir)))
    curves.loss_x = [rec['step'] for rec in train]
    curves.loss = [rec['loss'] for rec in train]
    by_epoch = bool(train) and 'epoch' in train[0]
    ipe = _iters_per_epoch(train) if by_epoch else None
    if not by_epoch and val and all(rec['step'] == 0 for rec in val):
        raise ValueError(
            f'{path}: an iteration-based run whose validations are logged at '
            'epoch 0, so they cannot be placed on the curve; train it with '
            "default_hooks.logger.log_metric_by_epoch=False (mmseg's default "
            'runtime sets it)')
    for rec in val:
        if by_epoch:  # step = epoch -> the iteration that ended it
            x = rec['step'] * ipe if ipe else curves.loss_x[-1]
        else:
            x = rec['step']
        curves.val_x.append(x)
        for key, value in rec.items():
            if key not in ('step', 'time', 'data_time'):
                curves.val.setdefault(key, []).append(value)
    return curves


def plot_curves(runs: Sequence[Curves],
                out: str,
                metric: Optional[str] = None,
                title: Optional[str] = None) -> str:
    """Training loss (left) and a validation metric (right) of ``runs`` on
    one figure, written to ``out`` (PNG).

    Args:
        runs (Sequence[Curves]): The runs, drawn in order.
        out (str): The picture's path.
        metric (str, optional): The validation metric. Defaults to the first
            of :data:`DEFAULT_METRICS` that the first run logs.
        title (str, optional): The figure's title. Defaults to None.

    Returns:
        str: The metric drawn.
    """
    import matplotlib
    matplotlib.use('Agg')  # files only, no display
    import matplotlib.pyplot as plt
    logged = runs[0].val
    if metric is None:
        metric = next((m for m in DEFAULT_METRICS if m in logged), None)
    if metric not in logged:
        names = ', '.join(sorted(logged)) or 'none'
        raise ValueError(
            f'{runs[0].name} does not log '
            f'{metric or " or ".join(DEFAULT_METRICS)}; name a metric it '
            f'logs with --metric (it logs: {names})')
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(9, 3.4))
    for run in runs:
        line, = ax_loss.plot(run.loss_x, run.loss, label=run.name, lw=1.2)
        if metric in run.val:
            ax_val.plot(run.val_x, run.val[metric], 'o-', ms=4,
                        color=line.get_color(), label=run.name)
    ax_loss.set(xlabel='iteration', ylabel='training loss')
    ax_val.set(xlabel='iteration', ylabel=metric, title='validation')
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return metric
