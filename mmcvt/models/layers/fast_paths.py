# Copyright (c) mmcvt contributors. All rights reserved.
"""How the CvT layers run fast: the execution plan and one entry point per
layer.

:func:`decide_plan` answers, once per ``CvT.forward``, every question that
picks a path: the ``fused`` switch, hooks, ``torch.compile`` / tracing /
dispatch modes, grad mode, device, oneDNN and the autocast dtype. The
answer, a frozen :class:`Plan`, travels down with ``hw_shape``. A layer's
forward is the paper's math plus one branch, ``if plan.fast:``, to its entry
point here:

- :func:`dw_conv_bn` (``DWConvBN``): the BatchNorm folded into the conv in
  eval mode, recomputed in the backward in training;
- :func:`attention` (``ConvAttention``): SDPA, or the chunked explicit
  attention where it is faster (bf16 on a CPU with native bf16 matmuls);
  :func:`linear` and :func:`qkv_input` for its projections (oneDNN's fused
  linear in CPU inference);
- :func:`mlp` (``Mlp``): QuickGELU folded into one ``silu``, recomputed in
  the backward;
- :func:`mlp_residual` (``CvTBlock``): the MLP branch, over cache-sized
  chunks of tokens in CPU inference.

Every device, dtype, hook and BatchNorm condition is here; the kernels
behind the entry points are in :mod:`.kernels`, the private torch APIs in
:mod:`.torch_internals`. Measured effects: docs/benchmark.md.
"""
import dataclasses
import enum
from typing import Iterable, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import kernels
from . import torch_internals as ti
from .basic import QUICK_GELU_ALPHA, QuickGELU

__all__ = [
    'Path', 'Plan', 'REFERENCE_PLAN', 'decide_plan', 'tools_watching_ops',
    'dw_conv_bn', 'attention', 'linear', 'qkv_input', 'mlp', 'mlp_residual',
    'mlp_weights', 'folds_quick_gelu', 'folds_quick_gelu_alpha',
    'is_plain_bn', 'syncs_statistics', 'can_recompute_bn',
    'explicit_attention_wins', 'EXPLICIT_TRAIN_MAX_KEYS'
]

# The explicit attention trains only up to this many keys per query (it
# keeps the probabilities, 2 KB of bf16 per query; the flash kernel none)
EXPLICIT_TRAIN_MAX_KEYS = 1024


class Path(enum.Enum):
    """How the layers compute their (same) function in one forward."""
    #: fast paths off: the official formulation, op by op
    REFERENCE = 'reference'
    #: folded weights with standard, differentiable ops only: what
    #: ``torch.compile``, tracing and FLOP counters are shown
    STANDARD = 'standard'
    #: autograd on: autograd functions that recompute in the backward
    FUSED_TRAIN = 'fused_train'
    #: no autograd: folded weights, in-place activations, chunked CPU MLP
    FUSED_INFER = 'fused_infer'
    #: FUSED_INFER on the CPU in fp32 or bf16 (autocast or bf16 weights),
    #: with oneDNN's fused linears
    ONEDNN_INFER = 'onednn_infer'


@dataclasses.dataclass(frozen=True)
class Plan:
    """The execution plan of one forward (:func:`decide_plan`).

    Args:
        path (Path): How the layers compute. Defaults to ``REFERENCE``.
        dtype (torch.dtype): The dtype the matmuls run in: autocast's, or
            the input's. Defaults to ``torch.float32``.
        cpu (bool): Whether the forward runs on the CPU. Defaults to True.
        autocast (bool): Whether autocast is on for the input's device.
            Defaults to False.
    """
    path: Path = Path.REFERENCE
    dtype: torch.dtype = torch.float32
    cpu: bool = True
    autocast: bool = False

    @property
    def fast(self) -> bool:
        """Whether the layers take their fast forms at all."""
        return self.path is not Path.REFERENCE

    @property
    def inference(self) -> bool:
        return self.path in (Path.FUSED_INFER, Path.ONEDNN_INFER)


#: the official formulation: the plan of a layer called on its own
REFERENCE_PLAN = Plan()


def tools_watching_ops() -> bool:
    """Whether a tool is watching the ops: ``torch.compile`` (which plans
    its own fusion and recomputation), ``torch.jit`` tracing, or a dispatch
    mode such as a FLOP counter (which should see whole standard matmuls and
    no recomputation)."""
    return (torch.compiler.is_compiling() or torch.jit.is_tracing()
            or ti.in_torch_dispatch_mode())


def has_hooks(modules: Iterable[nn.Module]) -> bool:
    """Whether a forward (pre-)hook would see one of ``modules`` run,
    including hooks registered for every module."""
    return ti.global_forward_hooks() or any(
        m._forward_hooks or m._forward_pre_hooks for m in modules)


def onednn_dtype_ok(input_dtype: torch.dtype, dtype: torch.dtype) -> bool:
    """Whether oneDNN's CPU linear takes an ``input_dtype`` input whose
    matmuls run in ``dtype``: fp32, or bf16 on a CPU with native bf16
    matmuls."""
    if dtype == torch.float32:
        return input_dtype == torch.float32
    return (dtype == torch.bfloat16
            and input_dtype in (torch.float32, torch.bfloat16)
            and ti.native_bf16_matmul())


def decide_plan(x: torch.Tensor, fused: bool,
                bypassed: Iterable[nn.Module]) -> Plan:
    """The plan of one forward of ``x``, decided once.

    Args:
        x (Tensor): The model's input.
        fused (bool): The model's switch (``CvT.set_fused``).
        bypassed (Iterable[nn.Module]): The modules a fast path computes
            without calling them: a hook on any of them (or a global one)
            gives the reference path, so that the hooks see what they
            expect. Read at every forward, so a hook added between two
            forwards is seen.
    """
    autocast = kernels.autocast_active(x)
    dtype = kernels.compute_dtype(x)
    cpu = x.device.type == 'cpu'
    if not fused or has_hooks(bypassed):
        path = Path.REFERENCE
    elif tools_watching_ops():
        path = Path.STANDARD
    elif torch.is_grad_enabled():
        path = Path.FUSED_TRAIN
    elif (cpu and ti.onednn_linear_usable()
          and onednn_dtype_ok(x.dtype, dtype)):
        path = Path.ONEDNN_INFER
    else:
        path = Path.FUSED_INFER
    return Plan(path, dtype, cpu, autocast)


# ---- DWConvBN: the convolutional projection ---------------------------------


def is_plain_bn(bn: nn.Module) -> bool:
    """A BatchNorm the fast paths may compute from its parameters and
    statistics: ``nn.BatchNorm2d`` or ``nn.SyncBatchNorm`` as they are (not
    subclassed; a deploy-time ``Identity`` is not one)."""
    return type(bn) in (nn.BatchNorm2d, nn.SyncBatchNorm)


def syncs_statistics(bn: nn.Module) -> bool:
    """Whether ``bn`` is a ``SyncBatchNorm`` that reduces its batch
    statistics over processes in this forward (training mode, more than one
    process in its group). Otherwise it computes what ``BatchNorm2d``
    computes, and the recomputing kernel applies."""
    if not (isinstance(bn, nn.SyncBatchNorm) and bn.training
            and torch.distributed.is_available()
            and torch.distributed.is_initialized()):
        return False
    group = bn.process_group or torch.distributed.group.WORLD
    return torch.distributed.get_world_size(group) > 1


def can_recompute_bn(conv: nn.Conv2d, bn: nn.Module) -> bool:
    """Whether :func:`kernels.dw_conv_bn_train` computes ``bn(conv(x))`` for
    these training-mode layers: a conv without bias and a plain BatchNorm
    with running statistics that does not synchronise them now."""
    return (conv.bias is None and is_plain_bn(bn) and bn.track_running_stats
            and bn.running_mean is not None and not syncs_statistics(bn))


def dw_conv_bn(conv: nn.Conv2d, bn: nn.Module, x: torch.Tensor,
               plan: Plan) -> torch.Tensor:
    """``bn(conv(x))`` of ``DWConvBN`` on a fast plan.

    An eval-mode BatchNorm is folded into the conv (one pass instead of
    two); in training its input is recomputed in the backward instead of
    stored (:class:`kernels.DWConvBNTrainFn`). In CPU mixed-precision
    training the projection runs in fp32: the depth-wise conv is cheap in
    fp32, and its half-precision backward is the slowest kernel of a bf16
    step (docs/benchmark.md); the linears after it cast again. A deploy-time
    ``Identity``, a subclassed BatchNorm, a SyncBatchNorm that reduces over
    processes, and the tools of ``Path.STANDARD`` get ``bn(conv(x))``.
    """
    if plan.path is Path.STANDARD or not is_plain_bn(bn):
        return bn(conv(x))
    if plan.path is Path.FUSED_TRAIN and plan.cpu and plan.autocast:
        with torch.autocast('cpu', enabled=False):
            return _dw_conv_bn(conv, bn, x.float(), recompute=True)
    return _dw_conv_bn(conv, bn, x, plan.path is Path.FUSED_TRAIN)


def _dw_conv_bn(conv: nn.Conv2d, bn: nn.Module, x: torch.Tensor,
                recompute: bool) -> torch.Tensor:
    if bn.training or bn.running_mean is None:
        if recompute and can_recompute_bn(conv, bn):
            return kernels.dw_conv_bn_train(x, conv, bn)
        return bn(conv(x))
    weight, bias = kernels.fold_bn(conv, bn)
    return F.conv2d(x, weight, bias, conv.stride, conv.padding,
                    conv.dilation, conv.groups)


# ---- ConvAttention ----------------------------------------------------------


def explicit_attention_wins(q: torch.Tensor, k: torch.Tensor) -> bool:
    """Whether a fast path computes attention with
    :func:`kernels.attention_chunked` instead of
    ``F.scaled_dot_product_attention``: bf16 on a CPU with native bf16
    matmuls, where the flash kernel runs its small blocks at about the fp32
    speed and whole bf16 batched matmuls are faster (docs/benchmark.md).

    Under autograd the explicit attention keeps the probabilities for the
    backward (the flash kernel keeps none): only up to
    ``EXPLICIT_TRAIN_MAX_KEYS`` keys per query, where they cost about what
    the block's other saved activations do (classification sizes; not the
    first stage of a detection input).
    """
    if not (q.device.type == 'cpu' and q.dtype == torch.bfloat16
            and ti.native_bf16_matmul()):
        return False
    return (not kernels.records_graph(q, k)
            or k.shape[-2] <= EXPLICIT_TRAIN_MAX_KEYS)



def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              scale: float, dropout: nn.Dropout, plan: Plan) -> torch.Tensor:
    """``dropout(softmax(q k^T * scale)) v`` of ``ConvAttention`` on a fast
    plan: ``(B, nh, Tq, hd)`` from q ``(B, nh, Tq, hd)`` and k, v
    ``(B, nh, Tkv, hd)``."""
    dropout_p = dropout.p if dropout.training else 0.
    if plan.path is not Path.STANDARD and explicit_attention_wins(q, k):
        return kernels.attention_chunked(q, k, v, scale, dropout_p)
    return F.scaled_dot_product_attention(
        q, k, v, dropout_p=dropout_p, scale=scale)



def qkv_input(x: torch.Tensor, plan: Plan) -> torch.Tensor:
    """The tokens ``ConvAttention`` projects: cast once to the plan's dtype
    on the oneDNN path (bf16 autocast), not once per projection."""
    return x.to(plan.dtype) if plan.path is Path.ONEDNN_INFER else x


def linear(layer: nn.Module, x: torch.Tensor, plan: Plan) -> torch.Tensor:
    """``layer(x)`` for a linear of ``ConvAttention``: in inference on the
    oneDNN path, oneDNN's linear (faster than ``F.linear``'s BLAS call for
    most of CvT's shapes); a wrapped or subclassed linear (LoRA) as it
    is."""
    if plan.path is Path.ONEDNN_INFER and type(layer) is nn.Linear:
        return _inference_linear(x, layer.weight, layer.bias, plan)
    return layer(x)


def _inference_linear(x: torch.Tensor,
                      weight: torch.Tensor,
                      bias: Optional[torch.Tensor],
                      plan: Plan,
                      silu: bool = False) -> torch.Tensor:
    """``F.linear`` (then an in-place ``silu``) without autograd; on the
    oneDNN path oneDNN's linear with the bias and ``silu`` fused, in the
    plan's dtype (``x`` and ``weight`` cast as autocast would, the bias as
    it is)."""
    if plan.path is Path.ONEDNN_INFER:
        return ti.onednn_linear(
            x.to(plan.dtype), weight.to(plan.dtype), bias, silu=silu)
    x = F.linear(x, weight, bias)
    return F.silu(x, inplace=True) if silu else x


# ---- Mlp and the block's MLP branch -----------------------------------------


def folds_quick_gelu(layer: nn.Module) -> bool:
    """Whether an ``Mlp``'s layers allow the folded ``silu`` form: QuickGELU
    between two plain ``nn.Linear`` (not wrapped, e.g. by LoRA)."""
    return (type(layer.act) is QuickGELU and type(layer.fc1) is nn.Linear
            and type(layer.fc2) is nn.Linear)


def folds_quick_gelu_alpha(dtype: torch.dtype) -> bool:
    """Whether the MLP fast paths may fold QuickGELU's ``a = 1.702`` into
    the linears around it (``fc1``'s output becomes ``a y``) when its
    matmuls run in ``dtype``: not in fp16, where ``a y`` overflows for
    ``|y| > 65504 / a`` while QuickGELU of ``y`` stays finite. fp32 and
    bf16 reach 3.4e38."""
    return dtype != torch.float16


def mlp_weights(layer: nn.Module,
                dtype: torch.dtype,
                cast: bool = False) -> Tuple[Optional[torch.Tensor], ...]:
    """``(a W1, a b1, W2 / a, b2)`` of an ``Mlp`` with QuickGELU's ``a``
    folded in: ``fc2(QuickGELU(fc1(x))) = linear(silu(linear(x, a W1,
    a b1)), W2 / a, b2)``. In fp16 (:func:`folds_quick_gelu_alpha`) the
    weights as they are. With ``cast`` the matrices in ``dtype`` (once per
    forward, not per chunk). The scaling costs ``O(C^2)``, against
    ``O(N C^2)`` for the linears."""
    w1, b1 = layer.fc1.weight, layer.fc1.bias
    w2, b2 = layer.fc2.weight, layer.fc2.bias
    if folds_quick_gelu_alpha(dtype):
        a = QUICK_GELU_ALPHA
        w1, w2 = w1 * a, w2 * (1. / a)
        b1 = None if b1 is None else b1 * a
    if cast:
        w1, w2 = w1.to(dtype), w2.to(dtype)
    return w1, b1, w2, b2


def mlp(layer: nn.Module, x: torch.Tensor, plan: Plan) -> torch.Tensor:
    """``drop(fc2(drop(act(fc1(x)))))`` of ``Mlp`` on a fast plan: with
    QuickGELU, one fused ``silu`` in place of its three element-wise passes
    over the hidden tensor (:func:`mlp_weights`), recomputed in the backward
    (:class:`kernels.SiluLinearFn`); other activations as they are."""
    weights = (mlp_weights(layer, plan.dtype)
               if folds_quick_gelu(layer) else None)
    return _mlp(layer, x, plan, weights)


def _mlp(layer: nn.Module, x: torch.Tensor, plan: Plan,
         weights: Optional[tuple]) -> torch.Tensor:
    drop = layer.drop
    if weights is None:  # other activations, wrapped linears
        return drop(layer.fc2(drop(layer.act(layer.fc1(x)))))
    w1, b1, w2, b2 = weights
    # fp16: QuickGELU itself on fc1(x), where a * fc1(x) could overflow
    quick = not folds_quick_gelu_alpha(plan.dtype)
    inplace = not torch.is_grad_enabled()
    if plan.inference:
        # (..., C) -> (..., C_hid) -> (..., C)
        h = _inference_linear(x, w1, b1, plan, silu=not quick)
        h = drop(kernels.quick_gelu(h, inplace) if quick else h)
        return drop(_inference_linear(h, w2, b2, plan))
    # (..., C) -> (..., C_hid): a * fc1(x), or fc1(x) in fp16
    z = F.linear(x, w1, b1)
    if (plan.path is Path.FUSED_TRAIN and z.requires_grad
            and not (layer.training and drop.p > 0)):
        return kernels.SiluLinearFn.apply(z, w2, b2, quick)
    h = kernels.quick_gelu(z, inplace) if quick else F.silu(z, inplace)
    return drop(F.linear(drop(h), w2, b2))


def mlp_residual(x: torch.Tensor, norm: nn.Module, layer: nn.Module,
                 drop_path: nn.Module, plan: Plan) -> torch.Tensor:
    """``x + drop_path(mlp(norm(x)))``, the MLP branch of ``CvTBlock``, on a
    fast plan.

    In CPU inference it runs over chunks of tokens and adds into ``x`` in
    place (``x`` is the block's own tensor, the sum of the attention
    branch): the MLP is row-wise, so the result is the same, and the hidden
    tensor (4x the width) lives in cache-sized pieces that are reused
    instead of being allocated, touched and written back to memory whole.
    """
    if not (plan.inference and plan.cpu and not layer.training):
        return x + drop_path(mlp(layer, norm(x), plan))
    flat = x.view(-1, x.shape[-1])  # (B, N, C) -> (B*N, C)
    rows = kernels.even_chunks(
        flat.shape[0], kernels.row_chunks(layer.fc1.out_features,
                                          plan.dtype))
    weights = (mlp_weights(layer, plan.dtype, cast=True)
               if folds_quick_gelu(layer) else None)
    for chunk in flat.split(rows):
        chunk += _mlp(layer, norm(chunk), plan, weights)
    return x
