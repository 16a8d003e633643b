# Copyright (c) mmcvt contributors. All rights reserved.
"""Activation checkpointing that leaves BatchNorm statistics as they would
be without it."""
import contextlib
import functools

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ['checkpoint']


@contextlib.contextmanager
def _bn_stats_restored(module: nn.Module):
    """Put every BatchNorm buffer of ``module`` (running statistics and
    ``num_batches_tracked``) back as it was on entry."""
    buffers = [(b, b.clone()) for m in module.modules()
               if isinstance(m, _BatchNorm) for b in m.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)


def _contexts(module: nn.Module) -> tuple:
    # the forward runs as usual; the recomputation in the backward (the same
    # batch, so the same normalisation) leaves the statistics untouched
    return contextlib.nullcontext(), _bn_stats_restored(module)


def checkpoint(module: nn.Module, *args):
    """``module(*args)`` with its activations recomputed in the backward
    (non-reentrant :func:`torch.utils.checkpoint.checkpoint`). The
    recomputation does not move ``module``'s BatchNorm statistics a second
    time: they change once per step, as without checkpointing."""
    return cp.checkpoint(
        module,
        *args,
        use_reentrant=False,
        context_fn=functools.partial(_contexts, module))
