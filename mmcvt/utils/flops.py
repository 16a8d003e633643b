# Copyright (c) mmcvt contributors. All rights reserved.
"""Multiply-accumulates and parameters of a CvT model at any input size, per
stage, with the attention matmuls counted apart (they grow with the square
of the token count; convolutions and linears with the count).

Counted by ``torch.utils.flop_counter.FlopCounterMode`` on the ``meta``
device (no memory, no compute): convolutions, linears and the attention
matmuls (``F.scaled_dot_product_attention`` included, see
:func:`mmcvt.utils.benchmark.measure.sdpa_formulas`). MACs = FLOPs / 2.
"""
from typing import Dict, List, Tuple

import torch
import torch.nn as nn

__all__ = ['count_model', 'format_table']

_ATTENTION_OPS = ('bmm', 'baddbmm', '_scaled_dot_product')


def _is_attention(op) -> bool:
    name = str(op)
    return any(k in name for k in _ATTENTION_OPS)


def count_model(model: nn.Module, backbone: nn.Module,
                shape: Tuple[int, int]) -> Dict:
    """Count ``model`` (its forward on one ``(1, C, H, W)`` image) and, per
    stage, its CvT ``backbone``. Both on the ``meta`` device.

    Returns:
        dict: ``stages`` (a row per stage: ``grid``, ``kv_grid``,
        ``params``, ``macs``, ``attention_macs``), ``backbone`` and ``total``
        (``params``, ``macs``, ``attention_macs``).
    """
    from torch.utils.flop_counter import FlopCounterMode

    from mmcvt.models.utils import cvt_spec
    from mmcvt.utils.benchmark.measure import sdpa_formulas
    x = torch.empty(1, backbone.in_channels, *shape, device='meta')
    counter = FlopCounterMode(display=False, custom_mapping=sdpa_formulas())
    with counter, torch.no_grad():
        model(x)
    counts = counter.get_flop_counts()

    def sums(path: str) -> Tuple[float, float]:
        ops = counts.get(path, {})
        macs = sum(ops.values()) / 2
        attn = sum(v for op, v in ops.items() if _is_attention(op)) / 2
        return macs, attn

    # the counter keys modules by their path from the root module's class
    name = next(n for n, m in model.named_modules() if m is backbone)
    stem = '.'.join(filter(None, (type(model).__name__, name)))
    grids = cvt_spec.token_grids(backbone.specs, tuple(shape))
    stages: List[Dict] = []
    for i, stage in enumerate(backbone.stages):
        macs, attn = sums(f'{stem}.stages.{i}')
        stages.append(
            dict(
                grid=grids[i][0],
                kv_grid=grids[i][1],
                params=sum(p.numel() for p in stage.parameters()),
                macs=macs,
                attention_macs=attn))
    total = sum(counts['Global'].values()) / 2
    attn_total = sum(v for op, v in counts['Global'].items()
                     if _is_attention(op)) / 2
    bb_macs, bb_attn = sums(stem)
    return dict(
        shape=tuple(shape),
        stages=stages,
        backbone=dict(
            params=sum(p.numel() for p in backbone.parameters()),
            macs=bb_macs,
            attention_macs=bb_attn),
        total=dict(
            params=sum(p.numel() for p in model.parameters()),
            macs=total,
            attention_macs=attn_total))


def format_table(result: Dict, title: str = '') -> str:
    """The counts of :func:`count_model` as a text table (GMACs)."""
    h, w = result['shape']
    rows = [('', 'tokens', 'k/v tokens', 'params (M)', 'GMACs',
             'attention GMACs')]
    for i, s in enumerate(result['stages']):
        rows.append((f'stage {i}', '{}x{}'.format(*s['grid']),
                     '{}x{}'.format(*s['kv_grid']), f"{s['params'] / 1e6:.3f}",
                     f"{s['macs'] / 1e9:.3f}",
                     f"{s['attention_macs'] / 1e9:.3f}"))
    for name in ('backbone', 'total'):
        r = result[name]
        rows.append((name, '', '', f"{r['params'] / 1e6:.3f}",
                     f"{r['macs'] / 1e9:.3f}",
                     f"{r['attention_macs'] / 1e9:.3f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f'{title} input {h}x{w}'.strip()]
    for k, r in enumerate(rows):
        lines.append('  '.join(
            c.ljust(wd) if i == 0 else c.rjust(wd)
            for i, (c, wd) in enumerate(zip(r, widths))))
        if k == 0:
            lines.append('-' * len(lines[-1]))
    return '\n'.join(lines)
