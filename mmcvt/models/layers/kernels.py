# Copyright (c) mmcvt contributors. All rights reserved.
"""The kernels of the fast paths: the same functions as the official
formulation, computed with fewer memory passes and less memory. Which
kernel a layer runs is decided in :mod:`.fast_paths`; nothing here looks at
modules' flags, hooks or the execution plan.

- :class:`DWConvBNTrainFn`: depth-wise conv + training-mode BatchNorm that
  recomputes the BatchNorm input in the backward instead of storing it;
- :class:`SiluLinearFn`: ``linear(silu(z))`` that recomputes ``silu`` in the
  backward (QuickGELU folded into ``silu``), over cache-sized row chunks on
  CPU;
- :func:`attention_chunked`: attention as the official code computes it,
  over bounded chunks of the scores;
- :func:`fold_bn`: an eval-mode BatchNorm folded into the conv before it;
- :func:`quick_gelu`: QuickGELU with its gradient written for fp16.
"""
import contextlib
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .basic import QUICK_GELU_ALPHA

__all__ = [
    'MLP_CHUNK_ELEMENTS', 'ATTN_CHUNK_ELEMENTS', 'autocast_active',
    'no_autocast', 'records_graph', 'compute_dtype', 'quick_gelu',
    'quick_gelu_backward', 'fold_bn', 'conv_with_bn_folded', 'row_chunks',
    'even_chunks', 'DWConvBNTrainFn', 'dw_conv_bn_train', 'SiluLinearFn',
    'attention_chunked'
]

# CPU inference runs the MLP over chunks of this many hidden activations
# (4 MB in fp32: a share of the L2/L3 caches)
MLP_CHUNK_ELEMENTS = 1 << 20
# attention_chunked computes at most this many scores at a time (8 MB in
# bf16): whole batched matmuls, bounded memory at detection sizes
ATTN_CHUNK_ELEMENTS = 1 << 22

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
    its faster GEMMs need more rows to reach their rate (docs/benchmark.md)."""
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
    which removes the three projections' outputs from a training step's
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
        # token layout): mixed layouts take a much slower CPU kernel
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


