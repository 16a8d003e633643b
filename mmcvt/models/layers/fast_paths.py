# Copyright (c) mmcvt contributors. All rights reserved.
"""The fast paths of the CvT layers: the same function as the official
formulation, with fewer memory passes and less memory.

One question picks a layer's path, asked once per forward:
:func:`select_path`. The layers of ``mmcvt/models/backbones/cvt.py`` work
without any of this (``Path.REFERENCE``, the official formulation op by op);
everything here is how the other paths compute the same thing:

- :class:`DWConvBNTrainFn`: depth-wise conv + training-mode BatchNorm that
  recomputes the BatchNorm input in the backward instead of storing it;
- :class:`SiluLinearFn`: ``linear(silu(z))`` that recomputes ``silu`` in the
  backward (QuickGELU folded into ``silu``, see ``Mlp``), over cache-sized
  row chunks on CPU;
- :func:`fused_linear`: ``F.linear`` (+ ``silu``), or in CPU inference
  (fp32, or bf16 autocast) oneDNN's linear with bias and ``silu`` fused (the
  kernel ``torch.compile`` uses on CPU); a private op, so it falls back to
  ``F.linear`` for good, with one warning, if it ever fails;
- :func:`attention_chunked`: attention as the official code computes it,
  over bounded chunks of the scores, where it beats the flash kernel
  (:func:`explicit_attention_wins`: bf16 on the CPU);
- :func:`fold_bn`: an eval-mode BatchNorm folded into the conv before it;
- :func:`mlp_residual_chunked`: the block's MLP branch over cache-sized
  chunks of tokens in CPU inference (:func:`row_chunks` rows each).
"""
import contextlib
import enum
import warnings
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules import module as _nn_module
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

__all__ = [
    'Path', 'select_path', 'tools_watching_ops', 'has_hooks',
    'is_plain_linear', 'fused_linear', 'fold_bn', 'conv_with_bn_folded',
    'row_chunks', 'mlp_residual_chunked', 'dw_conv_bn_train',
    'is_plain_bn', 'syncs_statistics', 'can_recompute_bn',
    'DWConvBNTrainFn', 'SiluLinearFn', 'QUICK_GELU_ALPHA', 'compute_dtype',
    'explicit_attention_wins', 'attention_chunked', 'folds_quick_gelu_alpha',
    'quick_gelu', 'quick_gelu_backward'
]

# QuickGELU(y) = y * sigmoid(1.702 y) = silu(1.702 y) / 1.702
QUICK_GELU_ALPHA = 1.702
# CPU inference runs the MLP over chunks of this many hidden activations
# (4 MB in fp32: a share of the L2/L3 caches)
MLP_CHUNK_ELEMENTS = 1 << 20
# attention_chunked computes at most this many scores at a time (8 MB in
# bf16): whole batched matmuls, bounded memory at detection sizes
ATTN_CHUNK_ELEMENTS = 1 << 22
# ... and trains through it only up to this many keys per query (2 KB of
# bf16 probabilities kept per query; see explicit_attention_wins)
EXPLICIT_TRAIN_MAX_KEYS = 1024

_HAS_ONEDNN_LINEAR = (torch.backends.mkldnn.is_available()
                      and hasattr(torch.ops.mkldnn, '_linear_pointwise'))


class Path(enum.Enum):
    """How a layer computes its (same) function."""
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


def tools_watching_ops() -> bool:
    """Whether a tool is watching the ops: ``torch.compile`` (which plans
    its own fusion and recomputation), ``torch.jit`` tracing, or a dispatch
    mode such as a FLOP counter (which should see whole standard matmuls and
    no recomputation)."""
    return (torch.compiler.is_compiling() or torch.jit.is_tracing()
            or is_in_torch_dispatch_mode())


def autocast_active(x: torch.Tensor) -> bool:
    try:
        return torch.is_autocast_enabled(x.device.type)
    except RuntimeError:  # a device without autocast, e.g. 'meta'
        return False


def no_autocast(x: torch.Tensor):
    """A context with autocast off for ``x``'s device, if it is on."""
    if autocast_active(x):
        return torch.autocast(x.device.type, enabled=False)
    return contextlib.nullcontext()


def records_graph(*tensors: torch.Tensor) -> bool:
    """Whether autograd records ops on these tensors (a backward will
    follow)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype the matmuls on ``x`` run in: autocast's for ``x``'s
    device when it is on, else ``x``'s own."""
    if autocast_active(x):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def onednn_dtype_ok(x: torch.Tensor) -> bool:
    """Whether oneDNN's CPU linear takes ``x``'s compute dtype: fp32, or
    bf16 on a CPU with native bf16 support (AVX512-BF16 / AMX)."""
    dtype = compute_dtype(x)
    if dtype == torch.float32:
        return x.dtype == torch.float32
    return (dtype == torch.bfloat16
            and x.dtype in (torch.float32, torch.bfloat16)
            and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def has_hooks(*modules: nn.Module) -> bool:
    """Whether a forward (pre-)hook would see these modules run, including
    hooks registered globally with ``register_module_forward_hook``."""
    if (_nn_module._global_forward_hooks
            or _nn_module._global_forward_pre_hooks):
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules)


def is_plain_linear(m: nn.Module) -> bool:
    """An ``nn.Linear`` whose forward may be computed from its weights
    directly (not wrapped or subclassed, e.g. by LoRA, and without hooks)."""
    return type(m) is nn.Linear and not has_hooks(m)


def select_path(x: torch.Tensor, fused: bool, *modules: nn.Module) -> Path:
    """The path a layer takes for input ``x``.

    Args:
        x (Tensor): The layer's input.
        fused (bool): The layer's switch (``CvT.set_fused``), and whether
            the layer can fold at all (e.g. QuickGELU, plain ``Linear``s).
        *modules (nn.Module): The submodules a fast path computes without
            calling them: hooks on any of them (or global ones) keep the
            reference path, so that the hooks see what they expect.
    """
    if not fused or has_hooks(*modules):
        return Path.REFERENCE
    if tools_watching_ops():
        return Path.STANDARD
    if torch.is_grad_enabled():
        return Path.FUSED_TRAIN
    if (x.device.type == 'cpu' and _HAS_ONEDNN_LINEAR
            and torch.backends.mkldnn.enabled and onednn_dtype_ok(x)):
        return Path.ONEDNN_INFER
    return Path.FUSED_INFER


def folds_quick_gelu_alpha(dtype: torch.dtype) -> bool:
    """Whether the MLP fast paths may fold QuickGELU's 1.702 into the
    linears around it (``fc1``'s output becomes ``1.702 y``) when its
    matmuls run in ``dtype``: not in fp16, where ``1.702 y`` overflows for
    ``|y| > 65504 / 1.702`` (about 38,486) while QuickGELU of ``y`` stays
    finite. fp32 and bf16 reach 3.4e38."""
    return dtype != torch.float16


def quick_gelu(y: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """``y * sigmoid(1.702 y)`` with the official QuickGELU's ops in
    ``y``'s dtype (so the same numbers): finite wherever ``y`` is."""
    s = torch.sigmoid(y * QUICK_GELU_ALPHA)
    return y.mul_(s) if inplace else y * s


def quick_gelu_backward(grad: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The gradient of :func:`quick_gelu`: ``grad * (s + a y s (1 - s))``
    with ``s = sigmoid(a y)``, written so that a saturated ``s`` (``a y``
    overflowed to inf in fp16) gives ``s`` and not ``inf * 0``."""
    s = torch.sigmoid(y * QUICK_GELU_ALPHA)
    return grad * (s + y * (QUICK_GELU_ALPHA * s * (1 - s)))


def fused_linear(x: torch.Tensor,
                 weight: torch.Tensor,
                 bias: Optional[torch.Tensor] = None,
                 silu: bool = False,
                 onednn: bool = False) -> torch.Tensor:
    """``F.linear`` (then ``F.silu`` if ``silu``).

    With ``onednn`` (``Path.ONEDNN_INFER``) it runs oneDNN's linear with the
    bias and ``silu`` fused into the matrix multiplication, which is faster
    than ``F.linear``'s BLAS call for most of CvT's shapes
    (docs/benchmark.md), in :func:`compute_dtype` (``x`` and ``weight`` cast
    to it as autocast would; the bias as it is).
    """
    global _HAS_ONEDNN_LINEAR
    if onednn and _HAS_ONEDNN_LINEAR:
        dtype = compute_dtype(x)
        try:
            return torch.ops.mkldnn._linear_pointwise(
                x.to(dtype), weight.to(dtype), bias,
                'swish' if silu else 'none', [], '')
        except Exception as e:  # a private op: its signature may change
            _HAS_ONEDNN_LINEAR = False
            warnings.warn(
                'CvT: oneDNN linear (torch.ops.mkldnn._linear_pointwise) '
                f'failed ({type(e).__name__}: {e}); using F.linear from now '
                'on. Outputs are unchanged, CPU inference is slower.')
    x = F.linear(x, weight, bias)
    return F.silu(x, inplace=not torch.is_grad_enabled()) if silu else x


def fold_bn(conv: nn.Conv2d,
            bn: nn.BatchNorm2d) -> Tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``conv`` with the eval-mode ``bn`` after it folded
    in (its running statistics)."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    bias = -bn.running_mean * scale
    if bn.bias is not None:
        bias = bias + bn.bias
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    # (C_out, C_in / groups, k, k) * (C_out, 1, 1, 1)
    return conv.weight * scale.reshape(-1, 1, 1, 1), bias


@torch.no_grad()
def conv_with_bn_folded(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new ``Conv2d`` (with bias) that computes ``bn(conv(x))`` of the
    eval-mode ``bn``: deployment."""
    weight, bias = fold_bn(conv, bn)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True).to(conv.weight)
    fused.weight.copy_(weight)
    fused.bias.copy_(bias)
    fused.weight.requires_grad_(conv.weight.requires_grad)
    fused.bias.requires_grad_(conv.weight.requires_grad)
    return fused


def row_chunks(hidden: int, dtype: torch.dtype = torch.float32) -> int:
    """Rows per chunk for row-wise CPU work on ``(N, hidden)`` tensors
    whose matmuls run in ``dtype``. bf16 chunks hold 4x the elements (8 MB):
    its faster GEMMs need more rows to reach their rate (stage-3 MLPs of
    CvT-13, batch 32: 379 ms at 4x against 407 ms at 1x)."""
    elements = MLP_CHUNK_ELEMENTS * (4 if dtype.itemsize == 2 else 1)
    return max(64, elements // hidden)


def even_chunks(n: int, rows: int) -> int:
    """Rows per chunk when ``n`` rows go in chunks of at most ``rows``, as
    even as possible (2730 + 2730 + 844 becomes 3 x 2102: a short last
    chunk runs its matmuls below rate)."""
    chunks = -(-n // rows)
    return -(-n // chunks) if n else rows  # an empty batch: one empty chunk


class DWConvBNTrainFn(torch.autograd.Function):
    """Depth-wise conv + training-mode BatchNorm that saves only the conv
    input.

    Autograd would keep the conv output (the BatchNorm input) for the
    backward as well; here it is recomputed there (a cheap depth-wise conv),
    which removes 1.5 token-sized tensors per block from a training step's
    memory. The running statistics are updated once, in the forward.

    Under autocast it computes what ``bn(conv(x))`` computes there: the conv
    in the autocast dtype (:func:`compute_dtype`), the BatchNorm on its
    output with fp32 statistics and affine parameters; the backward (where
    autocast is off) recomputes the conv in the same dtype.
    """

    @staticmethod
    def forward(ctx, x, conv_w, bn_w, bn_b, running_mean, running_var,
                momentum, eps, conv_args):
        dtype = compute_dtype(x)
        with no_autocast(x):
            y = F.conv2d(x.to(dtype), conv_w.to(dtype), None, *conv_args)
            out, save_mean, save_invstd = torch.native_batch_norm(
                y, bn_w, bn_b, running_mean, running_var, True, momentum,
                eps)
        ctx.save_for_backward(x, conv_w, bn_w, save_mean, save_invstd)
        ctx.eps = eps
        ctx.conv_args = conv_args
        ctx.dtype = dtype
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, conv_w, bn_w, save_mean, save_invstd = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv_args
        need_x, need_cw, need_w, need_b = ctx.needs_input_grad[:4]
        xc, wc = x.to(ctx.dtype), conv_w.to(ctx.dtype)
        y = F.conv2d(xc, wc, None, stride, padding, dilation, groups)
        # the same memory layout for both (channels-last here, from the
        # token layout): mixed layouts take a ~15x slower CPU kernel
        layout = (torch.channels_last if y.is_contiguous(
            memory_format=torch.channels_last) else torch.contiguous_format)
        grad_y, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(
            grad_out.to(y.dtype).contiguous(memory_format=layout),
            y.contiguous(memory_format=layout), bn_w, None, None, save_mean,
            save_invstd, True, ctx.eps, [True, need_w, need_b])
        grad_x, grad_cw, _ = torch.ops.aten.convolution_backward(
            grad_y, xc, wc, None, stride, padding, dilation, False, [0, 0],
            groups, [need_x, need_cw, False])
        # gradients in the inputs' dtypes (fp32 weights under AMP)
        grad_x = None if grad_x is None else grad_x.to(x.dtype)
        grad_cw = None if grad_cw is None else grad_cw.to(conv_w.dtype)
        return grad_x, grad_cw, grad_w, grad_b, None, None, None, None, None


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
    """Whether :func:`dw_conv_bn_train` computes ``bn(conv(x))`` for these
    training-mode layers: a conv without bias and a plain BatchNorm with
    running statistics that does not synchronise them now."""
    return (conv.bias is None and is_plain_bn(bn) and bn.track_running_stats
            and bn.running_mean is not None and not syncs_statistics(bn))


def dw_conv_bn_train(x: torch.Tensor, conv: nn.Conv2d,
                     bn: nn.BatchNorm2d) -> torch.Tensor:
    """``bn(conv(x))`` in training mode through :class:`DWConvBNTrainFn`,
    with the running-statistics bookkeeping of ``nn.BatchNorm2d``."""
    bn.num_batches_tracked.add_(1)
    momentum = (1. / float(bn.num_batches_tracked)
                if bn.momentum is None else bn.momentum)
    conv_args = (conv.stride, conv.padding, conv.dilation, conv.groups)
    return DWConvBNTrainFn.apply(x, conv.weight, bn.weight, bn.bias,
                                 bn.running_mean, bn.running_var, momentum,
                                 bn.eps, conv_args)


class SiluLinearFn(torch.autograd.Function):
    """``linear(silu(z), w, b)`` that saves ``z`` only: ``silu(z)`` is
    recomputed in the backward, so the MLP keeps one hidden-sized tensor for
    the backward instead of two. Works under autocast (``z`` and the
    gradient in bf16/fp16, ``w`` in fp32), as :func:`F.linear` does.
    With ``quick=True`` the activation is :func:`quick_gelu` instead (fp16,
    where the MLP does not fold QuickGELU into ``silu``).

    In fp32 on CPU both passes go over chunks of rows, so that ``silu(z)``
    and its gradient live in cache-sized pieces instead of two whole
    hidden-sized temporaries.
    """

    @staticmethod
    def forward(ctx, z, w, b, quick=False):
        ctx.save_for_backward(z, w)
        ctx.has_bias = b is not None
        ctx.quick = quick
        act = quick_gelu if quick else F.silu
        ctx.chunked = (z.device.type == 'cpu' and not autocast_active(z)
                       and z.dtype == w.dtype)
        if not ctx.chunked:
            return F.linear(act(z), w, b)
        # (..., C_hid) -> (N, C_hid) -> (N, C_out)
        z2 = z.reshape(-1, z.shape[-1])
        out = z2.new_empty(z2.shape[0], w.shape[0])
        rows = row_chunks(z2.shape[1])
        for zc, oc in zip(z2.split(rows), out.split(rows)):
            if b is None:
                torch.mm(act(zc), w.t(), out=oc)
            else:
                torch.addmm(b, act(zc), w.t(), out=oc)
        return out.view(*z.shape[:-1], w.shape[0])

    @staticmethod
    def backward(ctx, grad_out):
        z, w = ctx.saved_tensors
        act = quick_gelu if ctx.quick else F.silu
        act_backward = (quick_gelu_backward
                        if ctx.quick else torch.ops.aten.silu_backward)
        # (..., C_out) -> (N, C_out), (..., C_hid) -> (N, C_hid)
        g2 = grad_out.reshape(-1, grad_out.shape[-1])
        z2 = z.reshape(-1, z.shape[-1])
        grad_b = g2.sum(0).to(w.dtype) if ctx.has_bias else None
        if not ctx.chunked or g2.dtype != z.dtype:
            h = act(z2).to(g2.dtype)
            grad_w = g2.t().mm(h).to(w.dtype)
            grad_h = g2.mm(w.to(g2.dtype)).to(z.dtype)
            grad_z = act_backward(grad_h, z2)
            return grad_z.view_as(z), grad_w, grad_b, None
        grad_w = torch.zeros_like(w)
        grad_z = torch.empty_like(z2)
        rows = row_chunks(z2.shape[1])
        for gc, zc, gzc in zip(g2.split(rows), z2.split(rows),
                               grad_z.split(rows)):
            grad_w.addmm_(gc.t(), act(zc))
            if ctx.quick:
                gzc.copy_(quick_gelu_backward(gc.mm(w), zc))
            else:
                torch.ops.aten.silu_backward.grad_input(
                    gc.mm(w), zc, grad_input=gzc)
        return grad_z.view_as(z), grad_w, grad_b, None


def explicit_attention_wins(q: torch.Tensor, k: torch.Tensor) -> bool:
    """Whether a fast path computes attention with :func:`attention_chunked`
    instead of ``F.scaled_dot_product_attention``: bf16 on a CPU with
    native bf16 matmuls, where the flash kernel runs its small blocks at
    about the fp32 speed (forward) and took 18% of a training step in its
    backward, and whole bf16 batched matmuls are 1.5-3x faster
    (docs/benchmark.md).

    Under autograd the explicit attention keeps the probabilities for the
    backward (the flash kernel keeps none): only up to
    ``EXPLICIT_TRAIN_MAX_KEYS`` keys per query, where they cost about what
    the block's other saved activations do (classification sizes; the
    first stage has 784 keys at 224x224, 16,663 at 800x1333).
    """
    if not (q.device.type == 'cpu' and q.dtype == torch.bfloat16
            and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        return False
    return (not records_graph(q, k)
            or k.shape[-2] <= EXPLICIT_TRAIN_MAX_KEYS)


def attention_chunked(q: torch.Tensor,
                      k: torch.Tensor,
                      v: torch.Tensor,
                      scale: float,
                      dropout_p: float = 0.) -> torch.Tensor:
    """``softmax(q k^T * scale) v`` as the official code computes it under
    autocast (scores in the inputs' dtype, the softmax in fp32 inside the
    kernel), over chunks of at most ``ATTN_CHUNK_ELEMENTS`` scores.

    Differentiable: autograd keeps each chunk's probabilities (in the
    inputs' dtype) for the backward and nothing else score-sized.

    Args:
        q (Tensor): Queries, ``(B, nh, Tq, hd)``.
        k (Tensor): Keys, ``(B, nh, Tkv, hd)``.
        v (Tensor): Values, ``(B, nh, Tkv, hd)``.
        scale (float): Score scale.
        dropout_p (float): Dropout on the probabilities. Defaults to 0.

    Returns:
        Tensor: ``(B, nh, Tq, hd)``.
    """
    B, nh, Tq, hd = q.shape
    Tkv = k.shape[2]
    q3 = q.reshape(B * nh, Tq, hd)  # (B, nh, T, hd) -> (B*nh, T, hd)
    kt = k.reshape(B * nh, Tkv, hd).transpose(1, 2)  # (B*nh, hd, Tkv)
    v3 = v.reshape(B * nh, Tkv, hd)
    rows = max(1, min(Tq, ATTN_CHUNK_ELEMENTS // Tkv))
    group = max(1, ATTN_CHUNK_ELEMENTS // (rows * Tkv))
    # the scale is applied to the fp32 accumulators of q @ k^T (alpha)
    zero = q3.new_zeros(())  # baddbmm's ignored input (beta=0)
    # without autograd each chunk goes straight into the output: a chunk
    # spans whole rows, or rows of one head only (group == 1 when rows < Tq),
    # so its slice of ``out`` is contiguous. With autograd the chunks are
    # concatenated, and q, k, v are split, not sliced: the backward of a
    # split is one concatenation, where each slice's backward would write a
    # whole zero-filled gradient.
    out = None if records_graph(q, k, v) else q3.new_empty(B * nh, Tq, hd)
    outs = []
    for g, (qg, ktg, vg) in enumerate(
            zip(q3.split(group), kt.split(group), v3.split(group))):
        row_outs = []
        for r, qc in enumerate(qg.split(rows, dim=1)):
            # (G, rows, hd) @ (G, hd, Tkv) -> (G, rows, Tkv)
            attn = torch.baddbmm(zero, qc, ktg, beta=0, alpha=scale)
            attn = F.dropout(attn.softmax(dim=-1), p=dropout_p)
            # (G, rows, Tkv) @ (G, Tkv, hd) -> (G, rows, hd)
            if out is None:
                row_outs.append(torch.bmm(attn, vg))
            else:
                torch.bmm(attn, vg, out=out[g * group:(g + 1) * group,
                                             r * rows:(r + 1) * rows])
        if out is None:
            outs.append(torch.cat(row_outs, dim=1))
    if out is None:
        out = torch.cat(outs)
    return out.view(B, nh, Tq, hd)


def mlp_residual_chunked(x: torch.Tensor, norm: nn.Module,
                         mlp: nn.Module) -> torch.Tensor:
    """CPU inference: ``x + mlp(norm(x))`` over chunks of tokens, in place.
    The MLP is row-wise, so the result is the same; the hidden tensor (4x the
    width) then lives in cache-sized pieces that are reused instead of being
    allocated, touched and written back to memory whole."""
    # (B, N, C) -> (B*N, C); x is the block's own tensor
    flat = x.view(-1, x.shape[-1])
    dtype = compute_dtype(x)
    rows = even_chunks(flat.shape[0],
                       row_chunks(mlp.fc1.out_features, dtype))
    weights = mlp.folded_weights(dtype) if mlp.folds_quick_gelu else None
    for chunk in flat.split(rows):
        chunk += mlp(norm(chunk), weights)
    return x
