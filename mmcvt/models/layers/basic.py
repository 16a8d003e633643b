# Copyright (c) mmcvt contributors. All rights reserved.
"""Small layers and helpers of the CvT model: QuickGELU, stochastic depth,
norm / activation builders, conv output sizes, position-embedding
resizing."""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.utils import to_2tuple
from torch.nn.modules.batchnorm import _BatchNorm

from mmcvt.registry import MODELS

# QuickGELU(y) = y * sigmoid(1.702 y) = silu(1.702 y) / 1.702
QUICK_GELU_ALPHA = 1.702


class QuickGELU(nn.Module):
    """The sigmoid approximation of GELU used by CvT (and CLIP):
    ``x * sigmoid(1.702 * x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(QUICK_GELU_ALPHA * x)


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


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` that returns its input's dtype, as the official CvT
    ``LayerNorm`` (``ret.type(orig_type)``): statistics in fp32, the output
    in the input's precision.

    The same as ``nn.LayerNorm`` in fp32 and under CPU autocast (whose
    mixed-precision kernel returns bf16 for bf16). Under CUDA autocast
    ``nn.LayerNorm`` returns fp32; this one, like the official code, keeps a
    stage's residual stream in the precision of its token embedding (the
    last stage's is fp32: its fp32 class token promotes it, in the official
    code too).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).to(x.dtype)


def init_official(m: nn.Module) -> None:
    """The official initialisation of one module (``model.apply``):
    trunc-normal ``std=0.02`` linear weights, zero biases, unit norms;
    convolutions keep PyTorch's default."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.LayerNorm, _BatchNorm)):
        if m.weight is not None:
            nn.init.ones_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def build_norm(cfg: dict, num_features: int) -> nn.Module:
    """Build a token normalisation layer from ``dict(type='LN', ...)``."""
    cfg = dict(cfg)
    layer_type = cfg.pop('type', 'LN')
    if layer_type in ('LN', 'LayerNorm'):
        return LayerNorm(num_features, **cfg)
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


def conv_out(size: int,
             kernel: int,
             stride: int,
             padding: int,
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


def conv_out_2d(hw: Tuple[int, int], kernel, stride,
                padding) -> Tuple[int, int]:
    """Output size ``(H', W')`` of a conv on an ``hw`` input."""
    return tuple(
        conv_out(s, k, st, p) for s, k, st, p in zip(
            hw, to_2tuple(kernel), to_2tuple(stride), to_2tuple(padding)))


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
