# Copyright (c) mmcvt contributors. All rights reserved.
"""The private torch APIs the fast paths rely on, each behind one function
with a fallback for a torch release that renames or drops it, and the one
piece of process-wide state (:func:`onednn_linear` switching itself off).

Nothing else in mmcvt touches these APIs: a torch upgrade that breaks one
breaks it here, and the fallback keeps the model computing the same
function, at most more slowly.
"""
import functools
import warnings
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    'global_forward_hooks', 'in_torch_dispatch_mode', 'native_bf16_matmul',
    'onednn_linear_usable', 'onednn_linear'
]


def global_forward_hooks() -> bool:
    """Whether a forward (pre-)hook is registered for every module
    (``torch.nn.modules.module.register_module_forward_hook``).

    Reads ``torch.nn.modules.module._global_forward_hooks`` and
    ``_global_forward_pre_hooks``. Fallback, where torch has neither: True,
    so that every forward takes the reference path, which any hook sees as
    it expects (slower, never different).
    """
    module = nn.modules.module
    hooks = [
        getattr(module, name, None)
        for name in ('_global_forward_hooks', '_global_forward_pre_hooks')
    ]
    if all(h is None for h in hooks):
        return True
    return any(bool(h) for h in hooks if h is not None)


def in_torch_dispatch_mode() -> bool:
    """Whether a ``TorchDispatchMode`` (a FLOP counter, a debug mode) is
    watching the ops (``torch.utils._python_dispatch``). Fallback: False,
    the fast paths as without one."""
    try:
        from torch.utils._python_dispatch import is_in_torch_dispatch_mode
    except ImportError:
        return False
    return is_in_torch_dispatch_mode()


@functools.lru_cache(maxsize=None)
def native_bf16_matmul() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX512-BF16 or
    AMX), ``torch.ops.mkldnn._is_mkldnn_bf16_supported``. Fallback: False,
    bf16 then takes the paths of a CPU without it."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


# oneDNN's fused CPU linear, a private op; None once it has failed
_ONEDNN_LINEAR = {'op': None}


def _find_onednn_linear():
    if not torch.backends.mkldnn.is_available():
        return None
    return getattr(torch.ops.mkldnn, '_linear_pointwise', None)


_ONEDNN_LINEAR['op'] = _find_onednn_linear()


def onednn_linear_usable() -> bool:
    """Whether :func:`onednn_linear` runs oneDNN's kernel: a torch built
    with oneDNN (every x86 build), ``torch.backends.mkldnn.enabled``, and no
    failure of the op in this process."""
    return (_ONEDNN_LINEAR['op'] is not None
            and torch.backends.mkldnn.enabled)


def onednn_linear(x: torch.Tensor,
                  weight: torch.Tensor,
                  bias: Optional[torch.Tensor] = None,
                  silu: bool = False) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` (then ``F.silu`` if ``silu``) through
    oneDNN's CPU linear with the bias and ``silu`` fused into the matrix
    multiplication (``torch.ops.mkldnn._linear_pointwise``, the kernel
    ``torch.compile`` uses on CPU); ``x`` and ``weight`` in one dtype.

    Fallback: if the op is missing or raises (its signature may change
    between torch releases), ``F.linear`` from then on, for the whole
    process, with one warning. The result is the same.
    """
    op = _ONEDNN_LINEAR['op']
    if op is not None:
        try:
            return op(x, weight, bias, 'swish' if silu else 'none', [], '')
        except Exception as e:  # a private op: its signature may change
            _ONEDNN_LINEAR['op'] = None
            warnings.warn(
                'CvT: oneDNN linear (torch.ops.mkldnn._linear_pointwise) '
                f'failed ({type(e).__name__}: {e}); using F.linear from now '
                'on. Outputs are unchanged, CPU inference is slower.')
    x = F.linear(x, weight, bias)
    return F.silu(x, inplace=not torch.is_grad_enabled()) if silu else x
