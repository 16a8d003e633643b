# Copyright (c) mmcvt contributors. All rights reserved.
"""CvT: Convolutional vision Transformer, as an OpenMMLab backbone.

Paper: "CvT: Introducing Convolutions to Vision Transformers"
(Wu et al., ICCV 2021, https://arxiv.org/abs/2103.15808).

The numerics follow the official implementation
(``microsoft/CvT: lib/models/cls_cvt.py``) exactly: QuickGELU, LayerNorm with
``eps=1e-5``, an attention scale of ``dim ** -0.5`` over the FULL width (not
the head width), the class token split off before the convolutional
projection and concatenated back to q, k and v afterwards, and the stochastic
depth rule ``linspace(0, rate, depth)`` per stage.

Parameter names mirror the official ones under ``stages.{i}`` so that an
official checkpoint converts by renaming only:

====================================  =======================================
official                              mmcvt
====================================  =======================================
``stage{i}.patch_embed.proj``         ``stages.{i}.patch_embed.proj``
``stage{i}.blocks.{j}.attn...``       ``stages.{i}.blocks.{j}.attn...``
``stage{i}.cls_token``                ``stages.{i}.cls_token``
``norm``                              ``norm``
``head``                              ``head.fc`` (mmpretrain LinearClsHead)
====================================  =======================================

Fast paths (on by default, :meth:`CvT.set_fused`) compute the same function
with fewer memory passes and less memory: SDPA attention, QuickGELU folded into
one ``silu``, the projections' BatchNorm folded on the fly (eval) or
recomputed in the backward (training), and for fp32 CPU inference oneDNN
linears and a chunked MLP. :meth:`CvT.switch_to_deploy` folds the BatchNorms
permanently.

The file reads top to bottom: small layers, the transformer block, a stage,
the :class:`CvT` backbone, the checkpoint converters (official and
HuggingFace ``transformers`` layouts) and the architecture variants.
"""
import contextlib
import copy
import functools
import re
import warnings
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch.nn.modules import module as _nn_module
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

from mmcvt.registry import MODELS

__all__ = [
    'CvT', 'QuickGELU', 'DropPath', 'convert_official_to_mmcvt',
    'convert_hf_to_mmcvt', 'detect_format', 'infer_arch', 'variant_name',
    'convert_checkpoint'
]

# --------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------


class QuickGELU(nn.Module):
    """The sigmoid approximation of GELU used by CvT (and CLIP):
    ``x * sigmoid(1.702 * x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def drop_path(x: torch.Tensor,
              drop_prob: float = 0.,
              training: bool = False) -> torch.Tensor:
    """Stochastic depth: drop whole residual branches per sample."""
    if drop_prob == 0. or not training:
        return x
    keep_prob = 1 - drop_prob
    # (B, ...) -> mask of shape (B, 1, ..., 1), one draw per sample
    shape = (x.shape[0], ) + (1, ) * (x.ndim - 1)
    mask = x.new_empty(shape).bernoulli_(keep_prob)
    return x * mask / keep_prob


class DropPath(nn.Module):
    """Stochastic depth module.

    Args:
        drop_prob (float): Probability of dropping a residual branch.
            Defaults to 0.
    """

    def __init__(self, drop_prob: float = 0.):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob:.3f}'


def build_norm(cfg: dict, num_features: int) -> nn.Module:
    """Build a token normalisation layer from ``dict(type='LN', ...)``."""
    cfg = dict(cfg)
    layer_type = cfg.pop('type', 'LN')
    if layer_type in ('LN', 'LayerNorm'):
        return nn.LayerNorm(num_features, **cfg)
    raise ValueError(f'CvT supports norm_cfg type "LN" only, got '
                     f'"{layer_type}". Use norm_cfg=dict(type="LN", '
                     'eps=1e-5).')


_ACTIVATIONS = {
    'QuickGELU': QuickGELU,
    'GELU': nn.GELU,
    'ReLU': nn.ReLU,
    'SiLU': nn.SiLU,
}


def build_activation(cfg: dict) -> nn.Module:
    """Build an activation from ``dict(type='QuickGELU')`` / ``'GELU'``..."""
    cfg = dict(cfg)
    layer_type = cfg.pop('type', 'QuickGELU')
    if layer_type in _ACTIVATIONS:
        return _ACTIVATIONS[layer_type](**cfg)
    try:
        return MODELS.build(dict(type=layer_type, **cfg))
    except KeyError as e:
        raise ValueError(
            f'Unknown act_cfg type "{layer_type}"; use one of '
            f'{sorted(_ACTIVATIONS)} or a type registered in MODELS.') from e


def _pair(x) -> Tuple[int, int]:
    return tuple(x) if isinstance(x, (tuple, list)) else (x, x)


def _conv_out(size: int, kernel: int, stride: int, padding: int,
              ceil_mode: bool = False) -> int:
    """Output length of a conv / pool along one axis."""
    num = size + 2 * padding - kernel
    if ceil_mode:
        out = -(-num // stride) + 1
        # PyTorch: the last pooling window must start inside the input
        if (out - 1) * stride >= size + padding:
            out -= 1
        return out
    return num // stride + 1


# --------------------------------------------------------------------------
# Patch embedding, convolutional projection, attention, MLP, block
# --------------------------------------------------------------------------


class ConvEmbed(nn.Module):
    """Convolutional token embedding: ``Conv2d`` + ``LayerNorm`` on tokens.

    With ``kernel_size == stride`` and ``padding == 0`` it is the
    non-overlapping patch embedding of ViT (the paper's ablation).

    Args:
        in_channels (int): Input channels.
        embed_dims (int): Output channels / token width.
        kernel_size (int): Conv kernel size.
        stride (int): Conv stride.
        padding (int): Conv padding.
        norm_cfg (dict): Config of the token norm.
    """

    def __init__(self, in_channels: int, embed_dims: int, kernel_size: int,
                 stride: int, padding: int, norm_cfg: dict):
        super().__init__()
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.proj = nn.Conv2d(
            in_channels,
            embed_dims,
            kernel_size=kernel_size,
            stride=stride,
            padding=padding)
        self.norm = build_norm(norm_cfg, embed_dims)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, tuple]:
        x = self.proj(x)  # (B, C_in, H, W) -> (B, C, H', W')
        hw_shape = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)  # (B, C, H', W') -> (B, H'*W', C)
        x = self.norm(x)
        return x, hw_shape


def _autocast_active(x: torch.Tensor) -> bool:
    try:
        return torch.is_autocast_enabled(x.device.type)
    except RuntimeError:  # a device without autocast, e.g. 'meta'
        return False


_HAS_ONEDNN_LINEAR = (torch.backends.mkldnn.is_available()
                      and hasattr(torch.ops.mkldnn, '_linear_pointwise'))


def _standard_ops_expected() -> bool:
    """Whether a tool is watching the ops: ``torch.compile`` (which plans
    its own fusion and recomputation), ``torch.jit`` tracing, or a dispatch
    mode such as a FLOP counter (which should see whole standard matmuls and
    no recomputation). The fast paths then run plain standard ops."""
    return (torch.compiler.is_compiling() or torch.jit.is_tracing()
            or is_in_torch_dispatch_mode())


def _onednn_linear_ok(x: torch.Tensor) -> bool:
    """Whether :func:`linear` may use oneDNN: fp32 CPU inference with no
    autograd, autocast or tool expecting standard ops."""
    return (x.device.type == 'cpu' and x.dtype == torch.float32
            and not torch.is_grad_enabled() and _HAS_ONEDNN_LINEAR
            and torch.backends.mkldnn.enabled and not _autocast_active(x)
            and not _standard_ops_expected())


def _has_hooks(*modules: nn.Module) -> bool:
    """Whether a forward (pre-)hook would see these modules run, including
    hooks registered globally with ``register_module_forward_hook``."""
    if (_nn_module._global_forward_hooks
            or _nn_module._global_forward_pre_hooks):
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules)


def _is_plain_linear(m: nn.Module) -> bool:
    """An ``nn.Linear`` whose forward may be computed from its weights
    directly (not wrapped or subclassed, e.g. by LoRA, and without hooks)."""
    return type(m) is nn.Linear and not _has_hooks(m)


def linear(x: torch.Tensor,
           weight: torch.Tensor,
           bias: Optional[torch.Tensor] = None,
           silu: bool = False) -> torch.Tensor:
    """``F.linear`` (then ``F.silu`` if ``silu``), exact fp32.

    In fp32 CPU inference it runs oneDNN's linear (the kernel that
    ``torch.compile`` uses on CPU) with the bias and ``silu`` fused into the
    matrix multiplication, which is faster than ``F.linear``'s BLAS call for
    most of CvT's shapes (docs/benchmark.md). Everywhere else, and whenever
    autograd, autocast, ``torch.compile``, tracing or a dispatch mode is
    active, it is ``F.linear``.
    """
    global _HAS_ONEDNN_LINEAR
    if _onednn_linear_ok(x):
        try:
            return torch.ops.mkldnn._linear_pointwise(
                x, weight, bias, 'swish' if silu else 'none', [], '')
        except Exception as e:  # a private op: its signature may change
            _HAS_ONEDNN_LINEAR = False
            warnings.warn(
                'CvT: oneDNN linear (torch.ops.mkldnn._linear_pointwise) '
                f'failed ({type(e).__name__}: {e}); using F.linear from now '
                'on. Outputs are unchanged, CPU inference is slower.')
    x = F.linear(x, weight, bias)
    return F.silu(x, inplace=not torch.is_grad_enabled()) if silu else x


class _DWConvBNTrain(torch.autograd.Function):
    """Depth-wise conv + training-mode BatchNorm that saves only the conv
    input.

    Autograd would keep the conv output (the BatchNorm input) for the
    backward as well; here it is recomputed there (a cheap depth-wise conv),
    which removes 1.5 token-sized tensors per block from a training step's
    memory. The running statistics are updated once, in the forward.
    """

    @staticmethod
    def forward(ctx, x, conv_w, bn_w, bn_b, running_mean, running_var,
                momentum, eps, conv_args):
        y = F.conv2d(x, conv_w, None, *conv_args)
        out, save_mean, save_invstd = torch.native_batch_norm(
            y, bn_w, bn_b, running_mean, running_var, True, momentum, eps)
        ctx.save_for_backward(x, conv_w, bn_w, save_mean, save_invstd)
        ctx.eps = eps
        ctx.conv_args = conv_args
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, conv_w, bn_w, save_mean, save_invstd = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv_args
        need_x, need_cw, need_w, need_b = ctx.needs_input_grad[:4]
        y = F.conv2d(x, conv_w, None, stride, padding, dilation, groups)
        # the same memory layout for both (channels-last here, from the
        # token layout): mixed layouts take a ~15x slower CPU kernel
        layout = (torch.channels_last if y.is_contiguous(
            memory_format=torch.channels_last) else torch.contiguous_format)
        grad_y, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(
            grad_out.contiguous(memory_format=layout),
            y.contiguous(memory_format=layout), bn_w, None, None, save_mean,
            save_invstd, True, ctx.eps, [True, need_w, need_b])
        grad_x, grad_cw, _ = torch.ops.aten.convolution_backward(
            grad_y, x, conv_w, None, stride, padding, dilation, False,
            [0, 0], groups, [need_x, need_cw, False])
        return grad_x, grad_cw, grad_w, grad_b, None, None, None, None, None


class DWConvBN(nn.Module):
    """Depth-wise ``Conv2d`` + ``BatchNorm2d`` (the ``'dw_bn'`` projection).

    With ``fused`` (the default) the BatchNorm is folded into the
    convolution on the fly in eval mode (one pass instead of two), and in
    training mode the BatchNorm input is recomputed in the backward instead
    of stored (see :class:`_DWConvBNTrain`). Both compute the same function
    as ``bn(conv(x))``, the reference path taken with ``fused = False``, with
    the same parameters and state dict. :meth:`fuse` folds the BatchNorm
    permanently for deployment.
    """

    def __init__(self, dims: int, kernel_size: int, stride: int,
                 padding: int):
        super().__init__()
        self.conv = nn.Conv2d(
            dims,
            dims,
            kernel_size=kernel_size,
            stride=stride,
            padding=padding,
            groups=dims,
            bias=False)
        self.bn = nn.BatchNorm2d(dims)
        # False: the reference path bn(conv(x))
        self.fused = True

    def _folded(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Conv weight and bias with the eval-mode BatchNorm folded in."""
        conv, bn = self.conv, self.bn
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        bias = -bn.running_mean * scale
        if bn.bias is not None:
            bias = bias + bn.bias
        if conv.bias is not None:
            bias = bias + conv.bias * scale
        # (C, 1, k, k) * (C, 1, 1, 1)
        return conv.weight * scale.reshape(-1, 1, 1, 1), bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, bn = self.conv, self.bn
        if (not self.fused or type(bn) is not nn.BatchNorm2d
                or _standard_ops_expected()):
            # SyncBN, deploy (bn is an Identity), or a tool watching the ops
            return bn(conv(x))
        conv_args = (conv.stride, conv.padding, conv.dilation, conv.groups)
        if bn.training or bn.running_mean is None:
            if (not torch.is_grad_enabled() or _autocast_active(x)
                    or conv.bias is not None or not bn.track_running_stats):
                return bn(conv(x))
            # the same running-statistics bookkeeping as nn.BatchNorm2d
            bn.num_batches_tracked.add_(1)
            momentum = (1. / float(bn.num_batches_tracked)
                        if bn.momentum is None else bn.momentum)
            return _DWConvBNTrain.apply(x, conv.weight, bn.weight, bn.bias,
                                        bn.running_mean, bn.running_var,
                                        momentum, bn.eps, conv_args)
        weight, bias = self._folded()
        return F.conv2d(x, weight, bias, *conv_args)

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold ``bn`` (running statistics) into ``conv``; ``bn`` becomes an
        ``Identity``."""
        if isinstance(self.bn, nn.Identity):
            return
        conv = self.conv
        weight, bias = self._folded()
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
        self.conv = fused
        self.bn = nn.Identity()


class AvgProj(nn.Module):
    """Average-pooling projection (the ``'avg'`` ablation for k and v)."""

    def __init__(self, kernel_size: int, stride: int, padding: int):
        super().__init__()
        self.avg = nn.AvgPool2d(
            kernel_size=kernel_size,
            stride=stride,
            padding=padding,
            ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.avg(x)


def _build_projection(method: str, dims: int, kernel_size: int, stride: int,
                      padding: int) -> Optional[nn.Module]:
    if method == 'dw_bn':
        return DWConvBN(dims, kernel_size, stride, padding)
    if method == 'avg':
        return AvgProj(kernel_size, stride, padding)
    if method == 'linear':
        return None  # identity: tokens go straight to the linear projection
    raise ValueError(f'Unknown qkv_proj "{method}"; use one of '
                     "'dw_bn', 'avg', 'linear'.")


class ConvAttention(nn.Module):
    """Multi-head attention with convolutional projections of q, k and v.

    Args:
        embed_dims (int): Token width (in and out).
        num_heads (int): Number of heads.
        qkv_bias (bool): Bias of the q, k, v linear projections.
        attn_drop (float): Dropout on the attention weights.
        proj_drop (float): Dropout after the output projection.
        method (str): ``'dw_bn'``, ``'avg'`` (q keeps identity, as the
            official code) or ``'linear'`` (identity, no downsampling).
        kernel_size (int): Kernel of the conv projections.
        stride_q (int): Stride of the q projection.
        stride_kv (int): Stride of the k and v projections.
        padding_q (int): Padding of the q projection.
        padding_kv (int): Padding of the k and v projections.
        with_cls_token (bool): Whether the first token is a class token.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 qkv_bias: bool = True,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.,
                 method: str = 'dw_bn',
                 kernel_size: int = 3,
                 stride_q: int = 1,
                 stride_kv: int = 2,
                 padding_q: int = 1,
                 padding_kv: int = 1,
                 with_cls_token: bool = False):
        super().__init__()
        if embed_dims % num_heads != 0:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible '
                             f'by num_heads ({num_heads}).')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        # The official scale uses the FULL width, not the head width.
        self.scale = embed_dims**-0.5
        self.with_cls_token = with_cls_token
        self.attn_drop = attn_drop
        # False: explicit softmax(q k^T * scale) v (reference path)
        self.fused_attn = True

        self.conv_proj_q = _build_projection(
            'linear' if method == 'avg' else method, embed_dims, kernel_size,
            stride_q, padding_q)
        self.conv_proj_k = _build_projection(method, embed_dims, kernel_size,
                                             stride_kv, padding_kv)
        self.conv_proj_v = _build_projection(method, embed_dims, kernel_size,
                                             stride_kv, padding_kv)

        self.proj_q = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.proj_k = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.proj_v = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)

        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)

    @staticmethod
    def _project(proj: Optional[nn.Module],
                 x: torch.Tensor) -> torch.Tensor:
        if proj is not None:
            x = proj(x)  # (B, C, H, W) -> (B, C, H', W')
        return x.flatten(2).transpose(1, 2)  # (B, C, H', W') -> (B, H'*W', C)

    def _linear(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.fused_attn and _is_plain_linear(layer):
            return linear(x, layer.weight, layer.bias)
        return layer(x)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        # (B, T, C) -> (B, T, nh, hd) -> (B, nh, T, hd)
        return x.unflatten(-1, (self.num_heads, self.head_dims)).transpose(
            1, 2)

    def forward(self, x: torch.Tensor, hw_shape: Tuple[int,
                                                       int]) -> torch.Tensor:
        if self.with_cls_token:
            # (B, 1+H*W, C) -> (B, 1, C), (B, H*W, C)
            cls_token, x = x[:, :1], x[:, 1:]
        # (B, H*W, C) -> (B, C, H*W) -> (B, C, H, W); a view, no copy
        x = x.transpose(1, 2).unflatten(2, hw_shape)

        q = self._project(self.conv_proj_q, x)  # (B, Tq, C)
        k = self._project(self.conv_proj_k, x)  # (B, Tkv, C)
        v = self._project(self.conv_proj_v, x)  # (B, Tkv, C)

        if self.with_cls_token:
            # class token joins AFTER the conv projection: (B, 1+T, C)
            q = torch.cat((cls_token, q), dim=1)
            k = torch.cat((cls_token, k), dim=1)
            v = torch.cat((cls_token, v), dim=1)

        # (B, T, C) -> (B, nh, T, hd), T = Tq for q, Tkv for k and v
        q = self._split_heads(self._linear(self.proj_q, q))
        k = self._split_heads(self._linear(self.proj_k, k))
        v = self._split_heads(self._linear(self.proj_v, v))

        dropout_p = self.attn_drop if self.training else 0.
        if self.fused_attn:
            x = F.scaled_dot_product_attention(
                q, k, v, dropout_p=dropout_p, scale=self.scale)
        else:
            attn = (q @ k.transpose(-2, -1)) * self.scale  # (B, nh, Tq, Tkv)
            attn = attn.softmax(dim=-1)
            attn = F.dropout(attn, p=dropout_p)
            x = attn @ v  # (B, nh, Tq, hd)

        x = x.transpose(1, 2).flatten(2)  # (B, nh, Tq, hd) -> (B, Tq, C)
        x = self._linear(self.proj, x)
        x = self.proj_drop(x)
        return x


# QuickGELU(y) = y * sigmoid(1.702 y) = silu(1.702 y) / 1.702
_QUICK_GELU_ALPHA = 1.702
# CPU inference runs the MLP over chunks of this many hidden activations
# (4 MB in fp32: a share of the L2/L3 caches)
_MLP_CHUNK_ELEMENTS = 1 << 20


def _row_chunks(hidden: int) -> int:
    """Rows per chunk for row-wise CPU work on ``(N, hidden)`` tensors."""
    return max(64, _MLP_CHUNK_ELEMENTS // hidden)


class _SiluLinear(torch.autograd.Function):
    """``linear(silu(z), w, b)`` that saves ``z`` only: ``silu(z)`` is
    recomputed in the backward, so the MLP keeps one hidden-sized tensor for
    the backward instead of two. Works under autocast (``z`` and the
    gradient in bf16/fp16, ``w`` in fp32), as :func:`F.linear` does.

    In fp32 on CPU both passes go over chunks of rows, so that ``silu(z)``
    and its gradient live in cache-sized pieces instead of two whole
    hidden-sized temporaries.
    """

    @staticmethod
    def forward(ctx, z, w, b):
        ctx.save_for_backward(z, w)
        ctx.has_bias = b is not None
        ctx.chunked = (z.device.type == 'cpu' and not _autocast_active(z)
                       and z.dtype == w.dtype)
        if not ctx.chunked:
            return F.linear(F.silu(z), w, b)
        # (..., C_hid) -> (N, C_hid) -> (N, C_out)
        z2 = z.reshape(-1, z.shape[-1])
        out = z2.new_empty(z2.shape[0], w.shape[0])
        rows = _row_chunks(z2.shape[1])
        for zc, oc in zip(z2.split(rows), out.split(rows)):
            if b is None:
                torch.mm(F.silu(zc), w.t(), out=oc)
            else:
                torch.addmm(b, F.silu(zc), w.t(), out=oc)
        return out.view(*z.shape[:-1], w.shape[0])

    @staticmethod
    def backward(ctx, grad_out):
        z, w = ctx.saved_tensors
        # (..., C_out) -> (N, C_out), (..., C_hid) -> (N, C_hid)
        g2 = grad_out.reshape(-1, grad_out.shape[-1])
        z2 = z.reshape(-1, z.shape[-1])
        grad_b = g2.sum(0).to(w.dtype) if ctx.has_bias else None
        if not ctx.chunked or g2.dtype != z.dtype:
            h = F.silu(z2).to(g2.dtype)
            grad_w = g2.t().mm(h).to(w.dtype)
            grad_h = g2.mm(w.to(g2.dtype)).to(z.dtype)
            grad_z = torch.ops.aten.silu_backward(grad_h, z2)
            return grad_z.view_as(z), grad_w, grad_b
        grad_w = torch.zeros_like(w)
        grad_z = torch.empty_like(z2)
        rows = _row_chunks(z2.shape[1])
        for gc, zc, gzc in zip(g2.split(rows), z2.split(rows),
                               grad_z.split(rows)):
            grad_w.addmm_(gc.t(), F.silu(zc))
            torch.ops.aten.silu_backward.grad_input(
                gc.mm(w), zc, grad_input=gzc)
        return grad_z.view_as(z), grad_w, grad_b


class Mlp(nn.Module):
    """Two-layer MLP: ``fc1 -> act -> drop -> fc2 -> drop``.

    With ``fused`` (the default) and QuickGELU, the MLP runs as
    ``linear(silu(linear(x, a W1, a b1)), W2 / a, b2)`` with ``a = 1.702``:
    the same function and parameters as ``fc2(QuickGELU(fc1(x)))`` (the
    reference path, ``fused = False``), with one fused ``silu`` in place of
    QuickGELU's three element-wise passes over the hidden tensor. The weight
    scaling costs ``O(C^2)``, against ``O(N C^2)`` for the linears. In
    training, ``silu`` is recomputed in the backward (:class:`_SiluLinear`).
    """

    def __init__(self, in_features: int, hidden_features: int, act_cfg: dict,
                 drop: float = 0.):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = build_activation(act_cfg)
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)
        # False: the reference path fc2(act(fc1(x)))
        self.fused = True

    @property
    def folds_quick_gelu(self) -> bool:
        """Whether :meth:`forward` takes the folded ``silu`` path."""
        # not with hooks on the activation: the folded path never calls it
        return (self.fused and type(self.act) is QuickGELU
                and not _has_hooks(self.act) and _is_plain_linear(self.fc1)
                and _is_plain_linear(self.fc2))

    def folded_weights(self) -> Tuple[torch.Tensor, ...]:
        """``(a W1, a b1, W2 / a, b2)`` with ``a = 1.702``."""
        a = _QUICK_GELU_ALPHA
        b1 = self.fc1.bias
        return (self.fc1.weight * a, None if b1 is None else b1 * a,
                self.fc2.weight * (1. / a), self.fc2.bias)

    def forward(self,
                x: torch.Tensor,
                weights: Optional[Tuple[torch.Tensor, ...]] = None
                ) -> torch.Tensor:
        """
        Args:
            x (Tensor): Tokens, ``(..., C)``.
            weights (tuple, optional): :meth:`folded_weights`, when the
                caller computed them already. Defaults to None.
        """
        if not self.folds_quick_gelu:
            x = self.drop(self.act(self.fc1(x)))
            return self.drop(self.fc2(x))
        w1, b1, w2, b2 = weights or self.folded_weights()
        if not torch.is_grad_enabled():
            # (..., C) -> (..., C_hid) -> (..., C)
            h = self.drop(linear(x, w1, b1, silu=True))
            return self.drop(linear(h, w2, b2))
        z = F.linear(x, w1, b1)  # (..., C) -> (..., C_hid): a * fc1(x)
        if (z.requires_grad and not (self.training and self.drop.p > 0)
                and not _standard_ops_expected()):
            return _SiluLinear.apply(z, w2, b2)
        return self.drop(F.linear(self.drop(F.silu(z)), w2, b2))


class CvTBlock(nn.Module):
    """Pre-norm transformer block with convolutional attention.

    Args:
        embed_dims (int): Token width.
        num_heads (int): Number of attention heads.
        mlp_ratio (float): MLP hidden width / ``embed_dims``.
        qkv_bias (bool): Bias of the q, k, v projections.
        drop_rate (float): Dropout after the attention / MLP projections.
        attn_drop_rate (float): Dropout on the attention weights.
        drop_path_rate (float): Stochastic depth rate of this block.
        act_cfg (dict): MLP activation.
        norm_cfg (dict): Token norm.
        **attn_kwargs: Projection options of :class:`ConvAttention`.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 act_cfg: dict = dict(type='QuickGELU'),
                 norm_cfg: dict = dict(type='LN', eps=1e-5),
                 **attn_kwargs):
        super().__init__()
        self.norm1 = build_norm(norm_cfg, embed_dims)
        self.attn = ConvAttention(
            embed_dims,
            num_heads,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop_rate,
            proj_drop=drop_rate,
            **attn_kwargs)
        self.drop_path = DropPath(
            drop_path_rate) if drop_path_rate > 0. else nn.Identity()
        self.norm2 = build_norm(norm_cfg, embed_dims)
        self.mlp = Mlp(embed_dims, int(embed_dims * mlp_ratio), act_cfg,
                       drop_rate)

    def forward(self, x: torch.Tensor, hw_shape: Tuple[int,
                                                       int]) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), hw_shape))
        if self._mlp_in_chunks(x):
            return self._mlp_residual_chunked(x)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x

    def _mlp_in_chunks(self, x: torch.Tensor) -> bool:
        # not with hooks on any module that runs per chunk (norm2, the MLP
        # and its layers, or global ones): they would see chunks instead of
        # the whole tensor
        return (isinstance(self.mlp, Mlp) and self.mlp.fused
                and x.device.type == 'cpu' and not self.training
                and not torch.is_grad_enabled()
                and not _has_hooks(self.norm2, *self.mlp.modules())
                and not _standard_ops_expected())

    def _mlp_residual_chunked(self, x: torch.Tensor) -> torch.Tensor:
        """CPU inference: ``x + mlp(norm2(x))`` over chunks of tokens,
        in place. The MLP is row-wise, so the result is the same; the
        hidden tensor (4x the width) then lives in cache-sized pieces that
        are reused instead of being allocated, touched and written back to
        memory whole."""
        # (B, N, C) -> (B*N, C); x is this block's own tensor
        flat = x.view(-1, x.shape[-1])
        rows = _row_chunks(self.mlp.fc1.out_features)
        weights = self.mlp.folded_weights(
        ) if self.mlp.folds_quick_gelu else None
        for chunk in flat.split(rows):
            chunk += self.mlp(self.norm2(chunk), weights)
        return x


def resize_pos_embed(pos_embed: torch.Tensor, src_shape: Tuple[int, int],
                     dst_shape: Tuple[int, int]) -> torch.Tensor:
    """Bicubically resize a ``(1, H*W, C)`` position embedding."""
    if tuple(src_shape) == tuple(dst_shape):
        return pos_embed
    # (1, Hs*Ws, C) -> (1, C, Hs, Ws)
    grid = pos_embed.transpose(1, 2).unflatten(2, src_shape)
    grid = F.interpolate(
        grid, size=dst_shape, mode='bicubic', align_corners=False)
    return grid.flatten(2).transpose(1, 2)  # (1, C, Hd, Wd) -> (1, Hd*Wd, C)


class CvTStage(nn.Module):
    """One CvT stage: token embedding, optional class token and position
    embedding, then ``depth`` blocks.

    Args:
        in_channels (int): Input channels of the token embedding.
        embed_dims (int): Token width.
        depth (int): Number of blocks.
        num_heads (int): Number of attention heads.
        patch_size (int): Kernel of the token embedding conv.
        patch_stride (int): Stride of the token embedding conv.
        patch_padding (int): Padding of the token embedding conv.
        with_cls_token (bool): Whether to prepend a class token.
        pos_embed_shape (tuple, optional): Token grid of a learnable position
            embedding; None for no position embedding.
        drop_path_rates (list[float]): Stochastic depth rate per block.
        with_cp (bool): Gradient checkpointing per block.
        **block_kwargs: Options of :class:`CvTBlock`.
    """

    def __init__(self,
                 in_channels: int,
                 embed_dims: int,
                 depth: int,
                 num_heads: int,
                 patch_size: int,
                 patch_stride: int,
                 patch_padding: int,
                 with_cls_token: bool,
                 pos_embed_shape: Optional[Tuple[int, int]],
                 drop_rate: float,
                 drop_path_rates: List[float],
                 norm_cfg: dict,
                 with_cp: bool = False,
                 **block_kwargs):
        super().__init__()
        self.with_cp = with_cp
        self.patch_embed = ConvEmbed(in_channels, embed_dims, patch_size,
                                     patch_stride, patch_padding, norm_cfg)
        if with_cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
            nn.init.trunc_normal_(self.cls_token, std=.02)
        else:
            self.cls_token = None
        self.pos_embed_shape = pos_embed_shape
        if pos_embed_shape is not None:
            num_tokens = pos_embed_shape[0] * pos_embed_shape[1]
            self.pos_embed = nn.Parameter(
                torch.zeros(1, num_tokens, embed_dims))
            nn.init.trunc_normal_(self.pos_embed, std=.02)
        else:
            self.pos_embed = None
        self.pos_drop = nn.Dropout(p=drop_rate)
        self.blocks = nn.ModuleList([
            CvTBlock(
                embed_dims,
                num_heads,
                drop_rate=drop_rate,
                drop_path_rate=drop_path_rates[j],
                norm_cfg=norm_cfg,
                with_cls_token=with_cls_token,
                **block_kwargs) for j in range(depth)
        ])

    @property
    def num_extra_tokens(self) -> int:
        return 0 if self.cls_token is None else 1

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, tuple]:
        x, hw_shape = self.patch_embed(x)  # (B, C_in, H, W) -> (B, h*w, C)
        if self.pos_embed is not None:
            x = x + resize_pos_embed(self.pos_embed, self.pos_embed_shape,
                                     hw_shape)
        if self.cls_token is not None:
            cls_token = self.cls_token.expand(x.shape[0], -1, -1)
            x = torch.cat((cls_token, x), dim=1)  # -> (B, 1+h*w, C)
        x = self.pos_drop(x)
        for block in self.blocks:
            if self.with_cp and x.requires_grad:
                # the backward re-runs the block: its BatchNorm statistics
                # must move once per step, as without checkpointing
                x = cp.checkpoint(
                    block,
                    x,
                    hw_shape,
                    use_reentrant=False,
                    context_fn=functools.partial(_recompute_contexts, block))
            else:
                x = block(x, hw_shape)
        return x, hw_shape


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


def _recompute_contexts(module: nn.Module) -> tuple:
    """``context_fn`` of :func:`torch.utils.checkpoint.checkpoint`: the
    forward runs as usual; the recomputation in the backward (the same batch,
    so the same normalisation) leaves the BatchNorm statistics untouched."""
    return contextlib.nullcontext(), _bn_stats_restored(module)


# --------------------------------------------------------------------------
# The backbone
# --------------------------------------------------------------------------

_OUT_TYPES = ('cls_token', 'featmap', 'avg_featmap', 'raw')
_ARCH_KEYS = ('embed_dims', 'num_heads', 'depths', 'drop_path_rates')


@MODELS.register_module()
class CvT(BaseModule):
    """Convolutional vision Transformer (CvT).

    A PyTorch implementation of `CvT: Introducing Convolutions to Vision
    Transformers <https://arxiv.org/abs/2103.15808>`_, numerically identical
    to the official code, usable as an mmpretrain / mmdet / mmseg backbone.

    Args:
        arch (str | dict): CvT architecture. A name in :attr:`arch_zoo`
            (``'13'``/``'cvt-13'``, ``'21'``/``'cvt-21'``,
            ``'w24'``/``'cvt-w24'``) or a dict with the keys ``embed_dims``,
            ``num_heads``, ``depths`` and ``drop_path_rates`` (one entry per
            stage each). Defaults to ``'13'``.
        in_channels (int): Number of input image channels. Defaults to 3.
        out_indices (Sequence[int] | int): Stages to output, negative indices
            allowed; stages after the last one listed are not computed.
            Defaults to ``(2, )``.
        out_type (str): Output of the LAST stage: ``'cls_token'`` (final norm
            on the class token, ``(B, C)``), ``'featmap'`` (``(B, C, H, W)``),
            ``'avg_featmap'`` (final norm on the patch tokens, then their
            mean, ``(B, C)``) or ``'raw'`` (``(B, N, C)`` tokens including the
            class token). Earlier stages always give ``(B, C, H, W)``.
            Defaults to ``'cls_token'``.
        patch_sizes (int | Sequence[int]): Kernel of each stage's token
            embedding. Defaults to ``(7, 3, 3)``.
        patch_strides (int | Sequence[int]): Stride of each stage's token
            embedding. Defaults to ``(4, 2, 2)``.
        patch_paddings (int | Sequence[int]): Padding of each stage's token
            embedding. Defaults to ``(2, 1, 1)``.
        patch_embed (str | Sequence[str]): ``'conv'`` (overlapping
            convolutional token embedding) or ``'patch'`` (non-overlapping,
            kernel = stride, no padding). Defaults to ``'conv'``.
        qkv_proj (str | Sequence[str]): Projection of q, k, v: ``'dw_bn'``
            (depth-wise conv + BN), ``'avg'`` (average pooling for k and v)
            or ``'linear'`` (identity, no downsampling). Defaults to
            ``'dw_bn'``.
        proj_kernel (int | Sequence[int]): Kernel of the q/k/v projections.
            Defaults to 3.
        proj_padding_q (int | Sequence[int]): Padding of the q projection.
            Defaults to 1.
        proj_padding_kv (int | Sequence[int]): Padding of the k/v
            projections. Defaults to 1.
        stride_q (int | Sequence[int]): Stride of the q projection.
            Defaults to 1.
        stride_kv (int | Sequence[int]): Stride of the k/v projections.
            Defaults to 2.
        cls_token (bool | Sequence[bool]): Whether a stage has a class token.
            Defaults to ``(False, False, True)``.
        pos_embed (bool | Sequence[bool]): Whether a stage adds a learnable
            absolute position embedding (sized by ``img_size``, bicubically
            resized for other inputs). Defaults to False.
        mlp_ratio (float | Sequence[float]): MLP hidden width ratio.
            Defaults to 4.
        qkv_bias (bool | Sequence[bool]): Bias of the q, k, v linear layers.
            Defaults to True.
        img_size (int | Sequence[int]): Input size used to size the position
            embeddings. Defaults to 224.
        drop_rate (float): Dropout rate. Defaults to 0.
        attn_drop_rate (float): Attention dropout rate. Defaults to 0.
        drop_path_rate (float | Sequence[float], optional): Maximum
            stochastic depth rate. None uses the arch's per-stage rates; a
            sequence gives every stage's rate; a float sets the LAST stage's
            rate (earlier stages keep the arch's). Within a stage the rates
            are ``linspace(0, rate, depth)``. Defaults to None.
        norm_cfg (dict): Config of the token norms.
            Defaults to ``dict(type='LN', eps=1e-5)``.
        act_cfg (dict): MLP activation, ``'QuickGELU'`` or ``'GELU'``.
            Defaults to ``dict(type='QuickGELU')``.
        final_norm (bool): Whether to apply the final norm ``norm`` for the
            ``'cls_token'`` / ``'avg_featmap'`` outputs. Defaults to True.
        out_norm (bool): Whether to add a LayerNorm (``out_norm{i}``) to each
            ``(B, C, H, W)`` output, for dense prediction. Defaults to False.
        frozen_stages (int): Freeze the first ``n`` stages (token embedding,
            class token, position embedding, blocks); ``n == num_stages``
            also freezes ``norm``. -1 freezes nothing. Defaults to -1.
        norm_eval (bool): Keep BatchNorm layers in eval mode while training.
            Defaults to False.
        with_cp (bool): Gradient checkpointing per block. Defaults to False.
        init_cfg (dict | list[dict], optional): Initialisation config, e.g.
            ``dict(type='Pretrained', checkpoint=...)``; official and
            HuggingFace checkpoints are converted on the fly.
            Defaults to None.

    Examples:
        >>> import torch
        >>> from mmcvt.models import CvT
        >>> model = CvT(arch='13').eval()
        >>> model(torch.rand(1, 3, 224, 224))[0].shape
        torch.Size([1, 384])
        >>> model = CvT(arch='21', out_indices=(0, 1, 2), out_type='featmap')
        >>> [o.shape for o in model(torch.rand(1, 3, 224, 224))]
        [torch.Size([1, 64, 56, 56]), torch.Size([1, 192, 28, 28]), torch.Size([1, 384, 14, 14])]
    """  # noqa: E501

    # name / alias -> settings; filled in by "Architecture variants" at the
    # end of this file
    arch_zoo: Dict[str, dict] = {}
    OUT_TYPES = _OUT_TYPES

    def __init__(self,
                 arch: Union[str, dict] = '13',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (2, ),
                 out_type: str = 'cls_token',
                 patch_sizes: Union[int, Sequence[int]] = (7, 3, 3),
                 patch_strides: Union[int, Sequence[int]] = (4, 2, 2),
                 patch_paddings: Union[int, Sequence[int]] = (2, 1, 1),
                 patch_embed: Union[str, Sequence[str]] = 'conv',
                 qkv_proj: Union[str, Sequence[str]] = 'dw_bn',
                 proj_kernel: Union[int, Sequence[int]] = 3,
                 proj_padding_q: Union[int, Sequence[int]] = 1,
                 proj_padding_kv: Union[int, Sequence[int]] = 1,
                 stride_q: Union[int, Sequence[int]] = 1,
                 stride_kv: Union[int, Sequence[int]] = 2,
                 cls_token: Union[bool, Sequence[bool]] = (False, False,
                                                           True),
                 pos_embed: Union[bool, Sequence[bool]] = False,
                 mlp_ratio: Union[float, Sequence[float]] = 4.,
                 qkv_bias: Union[bool, Sequence[bool]] = True,
                 img_size: Union[int, Sequence[int]] = 224,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: Union[None, float, Sequence[float]] = None,
                 norm_cfg: dict = dict(type='LN', eps=1e-5),
                 act_cfg: dict = dict(type='QuickGELU'),
                 final_norm: bool = True,
                 out_norm: bool = False,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(init_cfg=init_cfg)

        # ---- architecture -------------------------------------------------
        self.arch_name, self.arch_settings = self._parse_arch(arch)
        self.embed_dims = list(self.arch_settings['embed_dims'])
        self.num_heads = list(self.arch_settings['num_heads'])
        self.depths = list(self.arch_settings['depths'])
        self.num_stages = num_stages = len(self.depths)
        if isinstance(in_channels, bool) or not isinstance(
                in_channels, int) or in_channels < 1:
            raise ValueError(f'in_channels must be a positive int (3 for RGB '
                             f'images), got {in_channels!r}.')
        self.in_channels = in_channels

        def per_stage(name, value, default):
            return _per_stage(name, value, num_stages, default)

        self.patch_embed_types = per_stage('patch_embed', patch_embed, None)
        for t in self.patch_embed_types:
            if t not in ('conv', 'patch'):
                raise ValueError(f'Unknown patch_embed "{t}"; use "conv" '
                                 '(overlapping conv embedding) or "patch" '
                                 '(non-overlapping).')
        self.patch_strides = per_stage('patch_strides', patch_strides,
                                       (4, 2, 2))
        sizes = per_stage('patch_sizes', patch_sizes, (7, 3, 3))
        paddings = per_stage('patch_paddings', patch_paddings, (2, 1, 1))
        # 'patch': non-overlapping embedding, kernel = stride, no padding
        self.patch_sizes = [
            s if t == 'conv' else st
            for s, st, t in zip(sizes, self.patch_strides,
                                self.patch_embed_types)
        ]
        self.patch_paddings = [
            p if t == 'conv' else 0
            for p, t in zip(paddings, self.patch_embed_types)
        ]
        self.qkv_proj = per_stage('qkv_proj', qkv_proj, None)
        for m in self.qkv_proj:
            if m not in ('dw_bn', 'avg', 'linear'):
                raise ValueError(f'Unknown qkv_proj "{m}"; use one of '
                                 "'dw_bn', 'avg', 'linear'.")
        proj_kernel = per_stage('proj_kernel', proj_kernel, None)
        proj_padding_q = per_stage('proj_padding_q', proj_padding_q, None)
        proj_padding_kv = per_stage('proj_padding_kv', proj_padding_kv, None)
        stride_q = per_stage('stride_q', stride_q, None)
        stride_kv = per_stage('stride_kv', stride_kv, None)
        self.with_cls_token = [
            bool(c)
            for c in per_stage('cls_token', cls_token, (False, False, True))
        ]
        pos_embed = [bool(p) for p in per_stage('pos_embed', pos_embed, None)]
        mlp_ratio = per_stage('mlp_ratio', mlp_ratio, None)
        qkv_bias = per_stage('qkv_bias', qkv_bias, None)
        self.img_size = _pair(img_size)
        for i, (m, k, sq, pq) in enumerate(
                zip(self.qkv_proj, proj_kernel, stride_q, proj_padding_q)):
            if m == 'dw_bn' and (sq != 1 or 2 * pq != k - 1):
                raise ValueError(
                    f'Stage {i}: the q projection (proj_kernel={k}, '
                    f'stride_q={sq}, proj_padding_q={pq}) must keep the '
                    'token grid for the residual connection; use stride_q=1'
                    ' and proj_padding_q=(proj_kernel - 1) // 2.')
        # settings for the input checks and the position embeddings
        self._proj_settings = [
            (k, sq, skv, pq, pkv, m) for k, sq, skv, pq, pkv, m in zip(
                proj_kernel, stride_q, stride_kv, proj_padding_q,
                proj_padding_kv, self.qkv_proj)
        ]

        # ---- drop path ----------------------------------------------------
        rates = list(self.arch_settings['drop_path_rates'])
        if drop_path_rate is None:
            pass
        elif isinstance(drop_path_rate, (int, float)):
            rates[-1] = float(drop_path_rate)
        else:
            rates = per_stage('drop_path_rate', drop_path_rate, None)
        self.drop_path_rates = [float(r) for r in rates]
        for name, values in (('drop_path_rate', self.drop_path_rates),
                             ('drop_rate', [drop_rate]),
                             ('attn_drop_rate', [attn_drop_rate])):
            bad = [v for v in values if not 0. <= v < 1.]
            if bad:
                raise ValueError(
                    f'{name} must be a probability in [0, 1), got {bad[0]} '
                    f'(per stage: {values}). 0 turns it off; CvT uses '
                    'drop_path_rate 0.1 (CvT-13/21) or 0.3 (W24).')

        # ---- outputs ------------------------------------------------------
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not isinstance(out_indices, Sequence) or isinstance(
                out_indices, str):
            raise TypeError('out_indices must be an int or a sequence of '
                            f'int, got {type(out_indices).__name__}.')
        indices = []
        for i in out_indices:
            if not isinstance(i, int) or not -num_stages <= i < num_stages:
                raise ValueError(
                    f'Invalid out_indices {tuple(out_indices)}: every index '
                    f'must be an int in [{-num_stages}, {num_stages - 1}] '
                    f'(this CvT has {num_stages} stages).')
            indices.append(i % num_stages)
        self.out_indices = sorted(set(indices))
        if out_type not in _OUT_TYPES:
            raise ValueError(f'Unsupported out_type "{out_type}"; use one of '
                             f'{_OUT_TYPES}.')
        self.out_type = out_type
        last = num_stages - 1
        if (out_type == 'cls_token' and last in self.out_indices
                and not self.with_cls_token[last]):
            raise ValueError(
                'out_type="cls_token" needs a class token in the last stage, '
                f'but cls_token={tuple(self.with_cls_token)}. Set '
                'cls_token[-1]=True or use out_type="avg_featmap" / '
                '"featmap".')

        if not isinstance(frozen_stages, int) or not (-1 <= frozen_stages <=
                                                      num_stages):
            raise ValueError(
                f'Invalid frozen_stages={frozen_stages}: must be an int in '
                f'[-1, {num_stages}] (-1 or 0 freezes nothing, '
                f'{num_stages} freezes every stage and the final norm).')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp

        # ---- layers -------------------------------------------------------
        self.stages = nn.ModuleList()
        grid = self.img_size
        channels = in_channels
        for i in range(num_stages):
            grid = _conv_out_2d(grid, self.patch_sizes[i],
                                self.patch_strides[i], self.patch_paddings[i])
            if pos_embed[i] and min(grid) < 1:
                raise ValueError(
                    f'img_size={img_size} gives no tokens in stage {i}; '
                    'use a larger img_size for the position embeddings.')
            dpr = torch.linspace(
                0, self.drop_path_rates[i], self.depths[i],
                device='cpu').tolist()
            k, sq, skv, pq, pkv, method = self._proj_settings[i]
            stage = CvTStage(
                in_channels=channels,
                embed_dims=self.embed_dims[i],
                depth=self.depths[i],
                num_heads=self.num_heads[i],
                patch_size=self.patch_sizes[i],
                patch_stride=self.patch_strides[i],
                patch_padding=self.patch_paddings[i],
                with_cls_token=self.with_cls_token[i],
                pos_embed_shape=tuple(grid) if pos_embed[i] else None,
                drop_rate=drop_rate,
                drop_path_rates=dpr,
                norm_cfg=norm_cfg,
                with_cp=with_cp,
                mlp_ratio=mlp_ratio[i],
                qkv_bias=qkv_bias[i],
                attn_drop_rate=attn_drop_rate,
                act_cfg=act_cfg,
                method=method,
                kernel_size=k,
                stride_q=sq,
                stride_kv=skv,
                padding_q=pq,
                padding_kv=pkv)
            self.stages.append(stage)
            channels = self.embed_dims[i]

        # final norm: only when the last stage's output uses it
        self.final_norm = final_norm
        if (final_norm and last in self.out_indices
                and out_type in ('cls_token', 'avg_featmap')):
            self.norm = build_norm(norm_cfg, self.embed_dims[-1])
        else:
            self.norm = None

        # extra norms on the (B, C, H, W) outputs for dense prediction
        self.out_norm = out_norm
        for i in self.out_indices:
            if out_norm and (i != last or out_type == 'featmap'):
                self.add_module(f'out_norm{i}',
                                build_norm(norm_cfg, self.embed_dims[i]))

        self.deploy = False
        self._freeze_stages()

    # ---- construction helpers -------------------------------------------

    @classmethod
    def _parse_arch(cls, arch) -> Tuple[str, dict]:
        if isinstance(arch, str):
            key = arch.lower()
            if key not in cls.arch_zoo:
                raise ValueError(
                    f'Unknown CvT arch "{arch}"; valid names are '
                    f'{sorted(cls.arch_zoo)} or a dict with the keys '
                    f'{list(_ARCH_KEYS)}.')
            return _display_name(key), copy.deepcopy(cls.arch_zoo[key])
        if not isinstance(arch, dict):
            raise TypeError('arch must be a str or a dict, got '
                            f'{type(arch).__name__}.')
        missing = [k for k in _ARCH_KEYS if k not in arch]
        if missing:
            raise ValueError(
                f'Custom CvT arch is missing the keys {missing}; a custom '
                f'arch needs all of {list(_ARCH_KEYS)} (one entry per '
                'stage each).')
        lengths = {k: len(arch[k]) for k in _ARCH_KEYS}
        if len(set(lengths.values())) != 1 or 0 in lengths.values():
            raise ValueError('Every key of a custom CvT arch needs one entry '
                             f'per stage (equal lengths); got lengths '
                             f'{lengths}.')
        extra = sorted(set(arch) - set(_ARCH_KEYS))
        if extra:
            raise ValueError(f'Unknown keys {extra} in custom CvT arch; '
                             f'allowed keys are {list(_ARCH_KEYS)}.')
        settings = {k: list(arch[k]) for k in _ARCH_KEYS}
        name = variant_name(settings['depths'], settings['embed_dims'])
        return _display_name(name) if name else 'custom CvT', settings

    # ---- train / eval / freezing ----------------------------------------

    def _freeze_stages(self) -> None:
        for i in range(min(self.frozen_stages, self.num_stages)):
            modules = [self.stages[i]]
            if hasattr(self, f'out_norm{i}'):
                modules.append(getattr(self, f'out_norm{i}'))
            for m in modules:
                m.eval()
                for param in m.parameters():
                    param.requires_grad = False
        if self.frozen_stages == self.num_stages and self.norm is not None:
            self.norm.eval()
            for param in self.norm.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'CvT':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    # ---- initialisation -------------------------------------------------

    def _is_pretrained_init(self) -> bool:
        cfgs = self.init_cfg if isinstance(self.init_cfg,
                                           list) else [self.init_cfg]
        return any(
            isinstance(c, dict) and c.get('type') == 'Pretrained'
            for c in cfgs)

    def init_weights(self) -> None:
        """Official initialisation (trunc-normal ``std=0.02`` linear weights,
        zero biases, unit norms, default convs, trunc-normal class token and
        position embeddings), or load ``init_cfg`` ``Pretrained`` weights."""
        if self._is_pretrained_init():
            super().init_weights()
            return

        def _init(m):
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.LayerNorm, _BatchNorm)):
                if m.weight is not None:
                    nn.init.ones_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

        self.apply(_init)
        for stage in self.stages:
            if stage.cls_token is not None:
                nn.init.trunc_normal_(stage.cls_token, std=.02)
            if stage.pos_embed is not None:
                nn.init.trunc_normal_(stage.pos_embed, std=.02)
        if self.init_cfg is not None:
            super().init_weights()  # a non-Pretrained init_cfg on top
        else:
            self._is_init = True

    # ---- deployment -----------------------------------------------------

    def switch_to_deploy(self) -> 'CvT':
        """Fold every ``'dw_bn'`` projection's BatchNorm into its depth-wise
        conv (uses the running statistics; outputs match eval mode)."""
        for m in self.modules():
            if isinstance(m, DWConvBN):
                m.fuse()
        self.deploy = True
        return self

    fuse_bn = switch_to_deploy

    def set_fused(self, mode: bool = True) -> 'CvT':
        """Turn the fast paths on (default) or off.

        On: attention through :func:`F.scaled_dot_product_attention`, the
        QuickGELU MLP as one ``silu`` with recomputation in the backward
        (:class:`Mlp`), the projection BatchNorm folded on the fly in eval
        mode and recomputed in training (:class:`DWConvBN`), and in fp32
        CPU inference oneDNN linears (:func:`linear`) and the MLP over
        cache-sized chunks of tokens (:class:`CvTBlock`). Off: the reference
        formulation of the official code, step by step. Both give the same
        outputs and gradients within float rounding, with the same
        parameters and state dict.

        Args:
            mode (bool): Whether to use the fast paths. Defaults to True.
        """
        for m in self.modules():
            if isinstance(m, ConvAttention):
                m.fused_attn = mode
            elif isinstance(m, (Mlp, DWConvBN)):
                m.fused = mode
        return self

    # ---- checkpoint loading ---------------------------------------------

    def _load_from_state_dict(self, state_dict, prefix, local_metadata,
                              strict, missing_keys, unexpected_keys,
                              error_msgs):
        keys = [k for k in state_dict if k.startswith(prefix)]
        if keys:
            local = OrderedDict((k[len(prefix):], state_dict[k]) for k in keys)
            fmt = _detect_format(local)
            if fmt is None:
                raise ValueError(
                    'Unrecognised CvT checkpoint: none of its keys look like '
                    'mmcvt (stages.*), official CvT (stage0.*) or '
                    'HuggingFace (cvt.encoder.stages.*) keys; first keys: '
                    f'{list(local)[:5]}. If it is wrapped, load with '
                    "init_cfg=dict(type='Pretrained', prefix=...).")
            if fmt != 'mmcvt':
                converted = convert_checkpoint(local, fmt)
                converted = _strip_backbone(converted, drop_head=True)
                print_log(
                    f'CvT: converted {fmt}-format checkpoint keys on the fly '
                    f'({len(local)} -> {len(converted)} keys; classifier '
                    'head ignored).',
                    logger='current')
                for k in keys:
                    del state_dict[k]
                for k, v in converted.items():
                    state_dict[prefix + k] = v
                local = converted
            self._check_arch_compatible(local)
            self._check_shapes(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def _check_shapes(self, state_dict: dict, prefix: str) -> None:
        """Resize position embeddings to this model's grid; raise on any
        other tensor whose shape differs from this model's (loading would
        leave that layer at its random initialisation)."""
        own = dict(self.named_parameters())
        own.update(self.named_buffers())
        mismatched = []
        for name, target in own.items():
            key = prefix + name
            value = state_dict.get(key)
            if not isinstance(value, torch.Tensor) or (value.shape
                                                       == target.shape):
                continue
            stage = re.match(r'^stages\.(\d+)\.pos_embed$', name)
            if stage and value.dim() == 3 and value.shape[2] == \
                    target.shape[2]:
                side = int(round(value.shape[1]**0.5))
                if side * side == value.shape[1]:
                    dst = self.stages[int(stage[1])].pos_embed_shape
                    state_dict[key] = resize_pos_embed(value, (side, side),
                                                       dst)
                    print_log(
                        f'CvT: resized {key} from a {side}x{side} to a '
                        f'{dst[0]}x{dst[1]} grid (bicubic).',
                        logger='current')
                    continue
            mismatched.append(f'{key}: checkpoint {tuple(value.shape)}, '
                              f'model {tuple(target.shape)}')
        if mismatched:
            raise ValueError(
                'Checkpoint tensors do not fit this '
                f'{self.arch_name} backbone: ' + '; '.join(mismatched[:8]) +
                (' ...' if len(mismatched) > 8 else '') + '. Build the '
                'backbone with the settings the checkpoint was trained with '
                '(mlp_ratio, qkv_proj, patch sizes, in_channels, ...), or '
                'remove these keys from the checkpoint to train them anew.')

    def _check_arch_compatible(self, state_dict: dict) -> None:
        """Raise if a checkpoint's stage structure belongs to another arch."""
        if not any(k.startswith('stages.') for k in state_dict):
            return
        ckpt = infer_arch(state_dict, strict=False)
        if (ckpt['depths'] == self.depths
                and ckpt['embed_dims'] == self.embed_dims):
            return
        name = variant_name(ckpt['depths'], ckpt['embed_dims'])
        looks = (f'{_display_name(name)} (arch="{name}")'
                 if name else 'a custom CvT')
        raise ValueError(
            f'Checkpoint does not match this {self.arch_name} '
            f'backbone (depths={self.depths}, embed_dims={self.embed_dims}):'
            f' it looks like {looks} with depths={ckpt["depths"]}, '
            f'embed_dims={ckpt["embed_dims"]}. Build the backbone with the '
            'matching arch.')

    # ---- forward --------------------------------------------------------

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError('CvT expects a (B, C, H, W) image tensor, got '
                            f'{type(x).__name__}.')
        if x.dim() != 4:
            raise ValueError('CvT expects a (B, C, H, W) image tensor, got '
                             f'shape {tuple(x.shape)}.')
        weight = self.stages[0].patch_embed.proj.weight
        if not x.is_floating_point():
            raise TypeError(
                f'CvT expects a floating-point image tensor ({weight.dtype},'
                f' like its weights), got {x.dtype}. Convert and normalise '
                'the images first, e.g. (x.float() - mean) / std, as the '
                "toolkits' data preprocessors do.")
        if x.dtype != weight.dtype and not _autocast_active(x):
            raise TypeError(
                f'CvT input is {x.dtype} but its weights are {weight.dtype}. '
                f'Cast the input (x.to({weight.dtype})), the model '
                f'(model.to({x.dtype})), or run under torch.autocast.')
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f'CvT expected in_channels={self.in_channels} input '
                f'channels, got {x.shape[1]} (input shape {tuple(x.shape)}). '
                'Fix the input or set in_channels.')
        hw = (x.shape[2], x.shape[3])
        grids = self._token_grids(hw)
        for i, (grid, kv_grid) in enumerate(grids):
            if min(grid) < 1 or min(kv_grid) < 1:
                min_size = self.min_input_size()
                raise ValueError(
                    f'Input of size {hw[0]}x{hw[1]} is too small: stage {i} '
                    f'gets a {grid[0]}x{grid[1]} token grid '
                    f'(k/v grid {kv_grid[0]}x{kv_grid[1]}). The minimum '
                    f'input size is {min_size}x{min_size}.')

    def _token_grids(self, hw: Tuple[int, int]) -> List[tuple]:
        """Token grid and k/v grid of every stage for an input size."""
        grids = []
        for i in range(self.num_stages):
            hw = _conv_out_2d(hw, self.patch_sizes[i], self.patch_strides[i],
                              self.patch_paddings[i])
            k, sq, skv, pq, pkv, method = self._proj_settings[i]
            if method == 'linear':
                kv = hw
            else:
                kv = tuple(
                    _conv_out(s, k, skv, pkv, ceil_mode=method == 'avg')
                    for s in hw)
            grids.append((hw, kv))
            if min(hw) < 1:
                break
        return grids

    def min_input_size(self) -> int:
        """The smallest square input that gives tokens in every stage."""
        for size in range(1, 4097):
            if all(
                    min(g) >= 1 and min(kv) >= 1
                    for g, kv in self._token_grids((size, size))):
                return size
        return -1

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        self._check_input(x)
        outs = []
        last_out = self.out_indices[-1]  # later stages are not computed
        for i, stage in enumerate(self.stages[:last_out + 1]):
            x, hw_shape = stage(x)  # (B, N, C), N = extra + h*w
            if i in self.out_indices:
                outs.append(self._format_output(x, hw_shape, i))
            if i < last_out:
                # drop the class token: (B, extra+h*w, C) -> (B, C, h, w)
                x = x[:, stage.num_extra_tokens:].transpose(1, 2).unflatten(
                    2, hw_shape)
        return tuple(outs)

    def _format_output(self, x: torch.Tensor, hw_shape: Tuple[int, int],
                       i: int) -> torch.Tensor:
        stage = self.stages[i]
        out_type = self.out_type if i == self.num_stages - 1 else 'featmap'
        if out_type == 'raw':
            return x  # (B, extra+h*w, C)
        if out_type == 'cls_token':
            cls_token = x[:, 0]  # (B, 1+h*w, C) -> (B, C)
            return self.norm(cls_token) if self.norm is not None \
                else cls_token
        patch_tokens = x[:, stage.num_extra_tokens:]  # (B, h*w, C)
        if out_type == 'avg_featmap':
            if self.norm is not None:
                patch_tokens = self.norm(patch_tokens)
            return patch_tokens.mean(dim=1)  # (B, h*w, C) -> (B, C)
        # featmap
        out_norm = getattr(self, f'out_norm{i}', None)
        if out_norm is not None:
            patch_tokens = out_norm(patch_tokens)
        # (B, h*w, C) -> (B, C, h*w) -> (B, C, h, w); one copy so that
        # necks / heads get a standard contiguous NCHW map
        return patch_tokens.transpose(1, 2).unflatten(2,
                                                      hw_shape).contiguous()


def _display_name(arch: str) -> str:
    """``'13'`` / ``'cvt-13'`` -> ``'CvT-13'``; ``'w24'`` -> ``'CvT-W24'``."""
    return 'CvT-' + arch.lower().replace('cvt-', '').upper()


def _conv_out_2d(hw, kernel, stride, padding) -> Tuple[int, int]:
    return tuple(
        _conv_out(s, k, st, p) for s, k, st, p in zip(
            hw, _pair(kernel), _pair(stride), _pair(padding)))


def _per_stage(name: str, value, num_stages: int, default) -> list:
    """Expand a scalar or check a per-stage sequence.

    A 3-entry default (e.g. ``patch_sizes=(7, 3, 3)``) adapts to other stage
    counts as (first stage, middle stages..., last stage).
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return [value] * num_stages
    value = list(value)
    if len(value) == num_stages:
        return value
    if default is not None and tuple(value) == tuple(default):
        if num_stages == 1:
            return [value[0]]
        return [value[0]] + [value[1]] * (num_stages - 2) + [value[-1]]
    raise ValueError(f'{name} needs one entry per stage ({num_stages}) or a '
                     f'scalar, got {value}.')


# --------------------------------------------------------------------------
# Checkpoint conversion (official / HuggingFace -> mmcvt)
# --------------------------------------------------------------------------

# HuggingFace ``CvtForImageClassification`` / ``CvtModel`` -> mmcvt backbone
_HF_RULES = [
    (r'^(?:cvt\.)?encoder\.stages\.(\d+)\.embedding\.convolution_embeddings'
     r'\.projection\.', r'stages.\1.patch_embed.proj.'),
    (r'^(?:cvt\.)?encoder\.stages\.(\d+)\.embedding\.convolution_embeddings'
     r'\.normalization\.', r'stages.\1.patch_embed.norm.'),
    (r'^(?:cvt\.)?encoder\.stages\.(\d+)\.cls_token$', r'stages.\1.cls_token'),
    (r'^(?:cvt\.)?encoder\.stages\.(\d+)\.layers\.(\d+)\.', r'stages.\1.'
     r'blocks.\2.'),
]
_HF_BLOCK_RULES = [
    (r'attention\.attention\.convolution_projection_(query|key|value)'
     r'\.convolution_projection\.convolution\.', r'attn.conv_proj_\1.conv.'),
    (r'attention\.attention\.convolution_projection_(query|key|value)'
     r'\.convolution_projection\.normalization\.', r'attn.conv_proj_\1.bn.'),
    (r'attention\.attention\.projection_(query|key|value)\.',
     r'attn.proj_\1.'),
    (r'attention\.output\.dense\.', r'attn.proj.'),
    (r'layernorm_before\.', r'norm1.'),
    (r'layernorm_after\.', r'norm2.'),
    (r'intermediate\.dense\.', r'mlp.fc1.'),
    (r'output\.dense\.', r'mlp.fc2.'),
]
_QKV = {'query': 'q', 'key': 'k', 'value': 'v'}


def _unwrap(state_dict: dict) -> dict:
    """Unwrap ``{'state_dict': ...}`` / ``{'model': ...}`` and strip a DDP
    ``module.`` prefix."""
    for key in ('state_dict', 'model', 'module'):
        if isinstance(state_dict, dict) and isinstance(
                state_dict.get(key), dict):
            state_dict = state_dict[key]
            break
    if not isinstance(state_dict, dict):
        raise ValueError('A CvT checkpoint must be a dict of tensors, got '
                         f'{type(state_dict).__name__}.')
    if state_dict and all(k.startswith('module.') for k in state_dict):
        state_dict = {k[len('module.'):]: v for k, v in state_dict.items()}
    return state_dict


def _detect_format(state_dict: dict) -> Optional[str]:
    keys = list(state_dict)
    if any(re.match(r'^stage\d+\.', k) for k in keys):
        return 'official'
    if any(re.match(r'^(cvt\.)?encoder\.stages\.\d+\.', k) for k in keys):
        return 'hf'
    if any(k.startswith('backbone.') for k in keys):
        return 'mmcvt_full'
    if any(
            k.startswith(('stages.', 'norm.', 'out_norm')) or k == 'norm'
            for k in keys):
        return 'mmcvt'
    return None


def detect_format(state_dict: dict) -> str:
    """Detect a CvT checkpoint's layout.

    Returns:
        str: ``'official'`` (``stage0.patch_embed.proj.weight``, ...),
        ``'hf'`` (``cvt.encoder.stages.0...``), ``'mmcvt_full'``
        (``backbone.stages...``, mmpretrain classifier layout) or
        ``'mmcvt'`` (bare backbone ``stages...``).

    Raises:
        ValueError: If the keys match none of them.
    """
    fmt = _detect_format(_unwrap(state_dict))
    if fmt is None:
        raise ValueError(
            'Unrecognised checkpoint: expected official CvT keys '
            '(stage0.patch_embed.proj.weight, ...), HuggingFace keys '
            '(cvt.encoder.stages.0...) or mmcvt keys (backbone.stages...); '
            f'got {list(state_dict)[:5]}...')
    return fmt


def convert_official_to_mmcvt(state_dict: dict) -> 'OrderedDict':
    """Convert an official ``microsoft/CvT`` checkpoint to the mmpretrain
    layout (``backbone.stages.*``, ``backbone.norm.*``, ``head.fc.*``).

    Raises:
        ValueError: On keys that are not part of an official CvT model.
    """
    state_dict = _unwrap(state_dict)
    out, unknown = OrderedDict(), []
    for key, value in state_dict.items():
        m = re.match(r'^stage(\d+)\.(.+)$', key)
        if m:
            out[f'backbone.stages.{m.group(1)}.{m.group(2)}'] = value
        elif key.startswith('norm.'):
            out['backbone.' + key] = value
        elif key.startswith('head.'):
            out['head.fc.' + key[len('head.'):]] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f'Unexpected keys for an official CvT checkpoint: '
                         f'{unknown[:10]}' +
                         (' ...' if len(unknown) > 10 else ''))
    _validate(out)
    return out


def convert_hf_to_mmcvt(state_dict: dict) -> 'OrderedDict':
    """Convert a HuggingFace ``transformers`` CvT checkpoint
    (``CvtForImageClassification`` or ``CvtModel``) to the mmpretrain layout
    (``backbone.stages.*``, ``backbone.norm.*``, ``head.fc.*``).

    Raises:
        ValueError: On keys that are not part of a HuggingFace CvT model.
    """
    state_dict = _unwrap(state_dict)
    out, unknown = OrderedDict(), []
    for key, value in state_dict.items():
        new = None
        for pattern, repl in _HF_RULES:
            new_key, n = re.subn(pattern, repl, key)
            if n:
                new = new_key
                break
        if new is not None and '.blocks.' in new:
            head, rest = re.match(r'^(stages\.\d+\.blocks\.\d+\.)(.+)$',
                                  new).groups()
            for pattern, repl in _HF_BLOCK_RULES:
                rest2, n = re.subn('^' + pattern, repl, rest)
                if n:
                    rest2 = re.sub(r'conv_proj_(query|key|value)',
                                   lambda mm: 'conv_proj_' + _QKV[mm[1]],
                                   rest2)
                    rest2 = re.sub(r'proj_(query|key|value)',
                                   lambda mm: 'proj_' + _QKV[mm[1]], rest2)
                    new = head + rest2
                    break
            else:
                new = None
        elif new is None:
            if key.startswith('layernorm.'):
                new = 'norm.' + key[len('layernorm.'):]
            elif key.startswith('classifier.'):
                out['head.fc.' + key[len('classifier.'):]] = value
                continue
        if new is None:
            unknown.append(key)
            continue
        out['backbone.' + new] = value
    if unknown:
        raise ValueError('Unexpected keys for a HuggingFace CvT checkpoint: '
                         f'{unknown[:10]}' +
                         (' ...' if len(unknown) > 10 else ''))
    _validate(out)
    return out


def _strip_backbone(state_dict: dict, drop_head: bool = True) -> OrderedDict:
    out = OrderedDict()
    for k, v in state_dict.items():
        if k.startswith('backbone.'):
            out[k[len('backbone.'):]] = v
        elif not (drop_head and k.startswith('head.')):
            out[k] = v
    return out


def convert_checkpoint(state_dict: dict,
                       fmt: Optional[str] = None) -> 'OrderedDict':
    """Convert any supported CvT checkpoint to the mmpretrain layout
    (``backbone.*``, ``head.fc.*``). ``fmt`` defaults to
    :func:`detect_format`."""
    state_dict = _unwrap(state_dict)
    fmt = fmt or detect_format(state_dict)
    if fmt == 'official':
        return convert_official_to_mmcvt(state_dict)
    if fmt == 'hf':
        return convert_hf_to_mmcvt(state_dict)
    if fmt == 'mmcvt':
        out = OrderedDict(('backbone.' + k, v) for k, v in state_dict.items())
    elif fmt == 'mmcvt_full':
        out = OrderedDict(state_dict)
    else:
        raise ValueError(f'Unknown checkpoint format "{fmt}".')
    _validate(out)
    return out


_BLOCK_PARAMS = ('norm1.weight', 'attn.proj_q.weight', 'attn.proj_k.weight',
                 'attn.proj_v.weight', 'attn.proj.weight', 'norm2.weight',
                 'mlp.fc1.weight', 'mlp.fc2.weight')


def infer_arch(state_dict: dict, strict: bool = True) -> dict:
    """Infer ``embed_dims``, ``depths`` and other settings from a backbone
    state dict in mmcvt layout (with or without the ``backbone.`` prefix).

    Args:
        state_dict (dict): The state dict.
        strict (bool): Raise ``ValueError`` on an incomplete / inconsistent
            structure. Defaults to True.
    """
    sd = _strip_backbone(state_dict, drop_head=True)
    stage_ids = sorted({
        int(m.group(1))
        for m in (re.match(r'^stages\.(\d+)\.', k) for k in sd) if m
    })
    embed_dims, depths, cls_tokens, mlp_ratios, problems = [], [], [], [], []
    if stage_ids != list(range(len(stage_ids))) or not stage_ids:
        problems.append(f'stage indices {stage_ids} are not 0..n-1')
    for i in stage_ids:
        w = sd.get(f'stages.{i}.patch_embed.proj.weight')
        if w is None or w.dim() != 4:
            problems.append(f'stages.{i}.patch_embed.proj.weight missing or '
                            'not 4-D')
            embed_dims.append(-1)
        else:
            embed_dims.append(int(w.shape[0]))
        blocks = sorted({
            int(m.group(1))
            for m in (re.match(rf'^stages\.{i}\.blocks\.(\d+)\.', k)
                      for k in sd) if m
        })
        depths.append(len(blocks))
        if blocks != list(range(len(blocks))):
            problems.append(f'stage {i} block indices {blocks} not 0..n-1')
        for j in blocks:
            for p in _BLOCK_PARAMS:
                key = f'stages.{i}.blocks.{j}.{p}'
                if key not in sd:
                    problems.append(f'{key} missing')
                elif (p.endswith('proj_q.weight') and w is not None
                      and tuple(sd[key].shape) != (w.shape[0], w.shape[0])):
                    problems.append(f'{key} has shape {tuple(sd[key].shape)}'
                                    f', expected {(w.shape[0], w.shape[0])}')
        fc1 = sd.get(f'stages.{i}.blocks.0.mlp.fc1.weight')
        if fc1 is not None and w is not None:
            mlp_ratios.append(fc1.shape[0] / w.shape[0])
        cls_tokens.append(f'stages.{i}.cls_token' in sd)
    if strict and problems:
        raise ValueError('Corrupt or incomplete CvT checkpoint: ' +
                         '; '.join(problems[:8]) +
                         (' ...' if len(problems) > 8 else ''))
    return dict(
        embed_dims=embed_dims,
        depths=depths,
        cls_token=cls_tokens,
        mlp_ratio=mlp_ratios,
        in_channels=int(sd['stages.0.patch_embed.proj.weight'].shape[1])
        if 'stages.0.patch_embed.proj.weight' in sd else None)


def variant_name(depths: Sequence[int],
                 embed_dims: Sequence[int]) -> Optional[str]:
    """Name (``'13'``, ``'21'``, ``'w24'``) of the zoo arch with these depths
    and widths, or None."""
    for name in ('13', '21', 'w24'):
        arch = CvT.arch_zoo[name]
        if list(depths) == arch['depths'] and list(
                embed_dims) == arch['embed_dims']:
            return name
    return None


def _validate(converted: dict) -> None:
    if not any(k.startswith('backbone.stages.') for k in converted):
        raise ValueError('Corrupt or empty CvT checkpoint: no stage weights '
                         'found.')
    infer_arch(converted, strict=True)


# --------------------------------------------------------------------------
# Architecture variants
# --------------------------------------------------------------------------
# From microsoft/CvT experiments/imagenet/cvt/cvt-{13,21,w24}-*.yaml. All
# share patch_sizes (7, 3, 3), patch_strides (4, 2, 2), patch_paddings
# (2, 1, 1), 'dw_bn' projections with kernel 3, stride_kv 2, mlp_ratio 4,
# qkv_bias and a class token in the last stage only. ``drop_path_rates``
# are the yamls' DROP_PATH_RATE (the maximum rate of each stage).
#
#   variant   params (+1000-class head)   GMACs @224    GMACs @384
#   CvT-13    19,997,480                  4.57          16.27
#   CvT-21    31,622,696                  7.18
#   CvT-W24   277,196,392                               194.2
_VARIANTS = {
    '13': dict(
        embed_dims=[64, 192, 384],
        num_heads=[1, 3, 6],
        depths=[1, 2, 10],
        drop_path_rates=[0., 0., 0.1]),
    '21': dict(
        embed_dims=[64, 192, 384],
        num_heads=[1, 3, 6],
        depths=[1, 4, 16],
        drop_path_rates=[0., 0., 0.1]),
    'w24': dict(
        embed_dims=[192, 768, 1024],
        num_heads=[3, 12, 16],
        depths=[2, 2, 20],
        drop_path_rates=[0., 0., 0.3]),
}
CvT.arch_zoo.update({
    alias: settings
    for name, settings in _VARIANTS.items()
    for alias in (name, f'cvt-{name}')
})
