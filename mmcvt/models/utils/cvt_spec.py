# Copyright (c) mmcvt contributors. All rights reserved.
"""What defines a CvT: the arch settings, one :class:`StageSpec` per stage
built from ``CvT``'s arguments and checked in one place
(:func:`build_stage_specs`), and the token grids an input size gives."""
import copy
import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.utils import to_2tuple

from ..layers import conv_out, conv_out_2d
from ..layers.kernels import autocast_active

__all__ = [
    'StageSpec', 'ARCH_KEYS', 'OUT_TYPES', 'parse_arch',
    'build_stage_specs', 'check_args', 'check_input', 'parse_out_indices',
    'token_grids', 'min_input_size', 'display_name', 'variant_name',
    'layer_depth'
]

ARCH_KEYS = ('embed_dims', 'num_heads', 'depths', 'drop_path_rates')
QKV_PROJ_METHODS = ('dw_bn', 'avg', 'linear')
OUT_TYPES = ('cls_token', 'featmap', 'avg_featmap', 'raw')


@dataclasses.dataclass
class StageSpec:
    """Everything that defines one CvT stage."""
    embed_dims: int
    num_heads: int
    depth: int
    drop_path_rate: float
    patch_size: int
    patch_stride: int
    patch_padding: int
    qkv_proj: str
    proj_kernel: int
    proj_stride_q: int
    proj_stride_kv: int
    proj_padding_q: int
    proj_padding_kv: int
    cls_token: bool
    pos_embed: bool
    mlp_ratio: float
    qkv_bias: bool

    def grid(self, hw: Tuple[int, int]) -> Tuple[int, int]:
        """The stage's token grid for an ``hw`` input map."""
        return conv_out_2d(hw, self.patch_size, self.patch_stride,
                           self.patch_padding)

    def kv_grid(self, grid: Tuple[int, int]) -> Tuple[int, int]:
        """The k/v token grid of the stage's ``grid`` of tokens."""
        if self.qkv_proj == 'linear':
            return grid
        return tuple(
            conv_out(s, self.proj_kernel, self.proj_stride_kv,
                     self.proj_padding_kv, ceil_mode=self.qkv_proj == 'avg')
            for s in grid)


def display_name(arch: str) -> str:
    """``'13'`` / ``'cvt-13'`` -> ``'CvT-13'``; ``'w24'`` -> ``'CvT-W24'``."""
    return 'CvT-' + arch.lower().replace('cvt-', '').upper()


def variant_name(arch_zoo: Dict[str, dict], depths: Sequence[int],
                 embed_dims: Sequence[int]) -> Optional[str]:
    """Name (``'13'``, ``'21'``, ``'w24'``) of the zoo arch with these depths
    and widths, or None."""
    for name in ('13', '21', 'w24'):
        arch = arch_zoo[name]
        if list(depths) == arch['depths'] and list(
                embed_dims) == arch['embed_dims']:
            return name
    return None


def parse_arch(arch, arch_zoo: Dict[str, dict]) -> Tuple[str, dict]:
    """``(display name, settings)`` of a zoo name or a custom arch dict."""
    if isinstance(arch, int) and not isinstance(arch, bool):
        # `--cfg-options model.backbone.arch=13` arrives as an int
        arch = str(arch)
    if isinstance(arch, str):
        key = arch.lower()
        if key not in arch_zoo:
            raise ValueError(
                f'Unknown CvT arch "{arch}"; valid names are '
                f'{sorted(arch_zoo)} or a dict with the keys '
                f'{list(ARCH_KEYS)}.')
        return display_name(key), copy.deepcopy(arch_zoo[key])
    if not isinstance(arch, dict):
        raise TypeError('arch must be a name (e.g. "cvt-13") or a dict, '
                        f'got {type(arch).__name__}.')
    missing = [k for k in ARCH_KEYS if k not in arch]
    if missing:
        raise ValueError(
            f'Custom CvT arch is missing the keys {missing}; a custom '
            f'arch needs all of {list(ARCH_KEYS)} (one entry per '
            'stage each).')
    lengths = {k: len(arch[k]) for k in ARCH_KEYS}
    if len(set(lengths.values())) != 1 or 0 in lengths.values():
        raise ValueError('Every key of a custom CvT arch needs one entry '
                         f'per stage (equal lengths); got lengths '
                         f'{lengths}.')
    extra = sorted(set(arch) - set(ARCH_KEYS))
    if extra:
        raise ValueError(f'Unknown keys {extra} in custom CvT arch; '
                         f'allowed keys are {list(ARCH_KEYS)}.')
    settings = {k: list(arch[k]) for k in ARCH_KEYS}
    name = variant_name(arch_zoo, settings['depths'], settings['embed_dims'])
    return display_name(name) if name else 'custom CvT', settings


def _per_stage(name: str, value, num_stages: int, default=None) -> list:
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


def check_probability(name: str, values: List[float]) -> None:
    """Raise unless every value is a probability in [0, 1)."""
    bad = [v for v in values if not 0. <= v < 1.]
    if bad:
        raise ValueError(
            f'{name} must be a probability in [0, 1), got {bad[0]} (per '
            f'stage: {values}). 0 turns it off; CvT uses drop_path_rate 0.1 '
            '(CvT-13/21) or 0.3 (W24).')


def build_stage_specs(arch_settings: dict, *, drop_path_rate, patch_sizes,
                      patch_strides, patch_paddings, patch_embed, qkv_proj,
                      proj_kernel, proj_padding_q, proj_padding_kv, stride_q,
                      stride_kv, cls_token, pos_embed, mlp_ratio,
                      qkv_bias) -> List[StageSpec]:
    """One :class:`StageSpec` per stage from the arch settings and the
    per-stage arguments of ``CvT`` (each a scalar for every stage or a
    sequence with one entry per stage; see ``CvT``), checked."""
    n = len(arch_settings['depths'])

    def expand(name, value, default=None):
        return _per_stage(name, value, n, default)

    embed = expand('patch_embed', patch_embed)
    for t in embed:
        if t not in ('conv', 'patch'):
            raise ValueError(f'Unknown patch_embed "{t}"; use "conv" '
                             '(overlapping conv embedding) or "patch" '
                             '(non-overlapping).')
    strides = expand('patch_strides', patch_strides, (4, 2, 2))
    # 'patch': non-overlapping embedding, kernel = stride, no padding
    sizes = [
        s if t == 'conv' else st for s, st, t in zip(
            expand('patch_sizes', patch_sizes, (7, 3, 3)), strides, embed)
    ]
    paddings = [
        p if t == 'conv' else 0 for p, t in zip(
            expand('patch_paddings', patch_paddings, (2, 1, 1)), embed)
    ]
    rates = list(arch_settings['drop_path_rates'])
    if isinstance(drop_path_rate, (int, float)):
        rates[-1] = drop_path_rate  # the last stage's
    elif drop_path_rate is not None:
        rates = expand('drop_path_rate', drop_path_rate)
    rates = [float(r) for r in rates]
    check_probability('drop_path_rate', rates)
    # StageSpec field -> its value in every stage
    per_stage = dict(
        embed_dims=arch_settings['embed_dims'],
        num_heads=arch_settings['num_heads'],
        depth=arch_settings['depths'],
        drop_path_rate=rates,
        patch_size=sizes,
        patch_stride=strides,
        patch_padding=paddings,
        qkv_proj=expand('qkv_proj', qkv_proj),
        proj_kernel=expand('proj_kernel', proj_kernel),
        proj_stride_q=expand('stride_q', stride_q),
        proj_stride_kv=expand('stride_kv', stride_kv),
        proj_padding_q=expand('proj_padding_q', proj_padding_q),
        proj_padding_kv=expand('proj_padding_kv', proj_padding_kv),
        cls_token=[
            bool(c)
            for c in expand('cls_token', cls_token, (False, False, True))
        ],
        pos_embed=[bool(p) for p in expand('pos_embed', pos_embed)],
        mlp_ratio=expand('mlp_ratio', mlp_ratio),
        qkv_bias=expand('qkv_bias', qkv_bias))
    specs = [
        StageSpec(**{field: values[i]
                     for field, values in per_stage.items()})
        for i in range(n)
    ]
    for i, s in enumerate(specs):
        if s.qkv_proj not in QKV_PROJ_METHODS:
            raise ValueError(f'Unknown qkv_proj "{s.qkv_proj}"; use one of '
                             "'dw_bn', 'avg', 'linear'.")
        if s.qkv_proj == 'dw_bn' and (s.proj_stride_q != 1 or
                                      2 * s.proj_padding_q !=
                                      s.proj_kernel - 1):
            raise ValueError(
                f'Stage {i}: the q projection (proj_kernel={s.proj_kernel}, '
                f'stride_q={s.proj_stride_q}, proj_padding_q='
                f'{s.proj_padding_q}) must keep the token grid for the '
                'residual connection; use stride_q=1 and '
                'proj_padding_q=(proj_kernel - 1) // 2.')
    return specs


def parse_out_indices(out_indices, num_stages: int) -> List[int]:
    """Sorted, non-negative stage indices; negative ones count from the
    end."""
    n = num_stages
    if isinstance(out_indices, int):
        out_indices = [out_indices]
    if not isinstance(out_indices, Sequence) or isinstance(out_indices, str):
        raise TypeError('out_indices must be an int or a sequence of int, '
                        f'got {type(out_indices).__name__}.')
    for i in out_indices:
        if not isinstance(i, int) or not -n <= i < n:
            raise ValueError(
                f'Invalid out_indices {tuple(out_indices)}: every index '
                f'must be an int in [{-n}, {n - 1}] (this CvT has {n} '
                'stages).')
    return sorted({i % n for i in out_indices})


def token_grids(specs: List[StageSpec], hw: Tuple[int, int]) -> List[tuple]:
    """Token grid and k/v grid of every stage for an input size, up to the
    first stage left without tokens."""
    grids = []
    for spec in specs:
        hw = spec.grid(hw)
        grids.append((hw, spec.kv_grid(hw)))
        if min(hw) < 1:
            break
    return grids


def min_input_size(specs: List[StageSpec]) -> int:
    """The smallest square input that gives tokens in every stage."""
    for size in range(1, 4097):
        if all(
                min(g) >= 1 and min(kv) >= 1
                for g, kv in token_grids(specs, (size, size))):
            return size
    return -1


def check_args(specs: List[StageSpec], out_indices: List[int],
               in_channels: int, out_type: str, frozen_stages: int,
               drop_rate: float, attn_drop_rate: float,
               img_size=224) -> None:
    """Check the arguments of ``CvT`` that are not per stage."""
    n = len(specs)
    hw = to_2tuple(img_size)
    for i, spec in enumerate(specs):
        hw = spec.grid(hw)
        if spec.pos_embed and min(hw) < 1:
            raise ValueError(
                f'img_size={img_size} gives no tokens in stage {i}; '
                'use a larger img_size for the position embeddings.')
    if isinstance(in_channels, bool) or not isinstance(
            in_channels, int) or in_channels < 1:
        raise ValueError(f'in_channels must be a positive int (3 for RGB '
                         f'images), got {in_channels!r}.')
    check_probability('drop_rate', [drop_rate])
    check_probability('attn_drop_rate', [attn_drop_rate])
    if out_type not in OUT_TYPES:
        raise ValueError(f'Unsupported out_type "{out_type}"; use one of '
                         f'{OUT_TYPES}.')
    if (out_type == 'cls_token' and n - 1 in out_indices
            and not specs[-1].cls_token):
        raise ValueError(
            'out_type="cls_token" needs a class token in the last stage, '
            f'but cls_token={tuple(s.cls_token for s in specs)}. Set '
            'cls_token[-1]=True or use out_type="avg_featmap" / "featmap".')
    if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= n:
        raise ValueError(
            f'Invalid frozen_stages={frozen_stages}: must be an int in '
            f'[-1, {n}] (-1 or 0 freezes nothing, {n} freezes every stage '
            'and the final norm).')


def check_input(x: torch.Tensor, specs: List[StageSpec], in_channels: int,
                dtype: torch.dtype) -> None:
    """Check an input batch: a floating-point ``(B, in_channels, H, W)``
    tensor of the weights' ``dtype`` (or under autocast), large enough for
    every stage."""
    if not isinstance(x, torch.Tensor):
        raise TypeError('CvT expects a (B, C, H, W) image tensor, got '
                        f'{type(x).__name__}.')
    if x.dim() != 4:
        raise ValueError('CvT expects a (B, C, H, W) image tensor, got '
                         f'shape {tuple(x.shape)}.')
    if not x.is_floating_point():
        raise TypeError(
            f'CvT expects a floating-point image tensor ({dtype}, like its '
            f'weights), got {x.dtype}. Convert and normalise the images '
            'first, e.g. (x.float() - mean) / std, as the toolkits\' data '
            'preprocessors do.')
    # autocast runs float32 (and half) inputs in its own dtype, not float64
    if x.dtype != dtype and not (autocast_active(x)
                                 and x.dtype != torch.float64):
        raise TypeError(
            f'CvT input is {x.dtype} but its weights are {dtype}. Cast the '
            f'input (x.to({dtype})), the model (model.to({x.dtype})), or run '
            'under torch.autocast.')
    if x.shape[1] != in_channels:
        raise ValueError(
            f'CvT expected in_channels={in_channels} input channels, got '
            f'{x.shape[1]} (input shape {tuple(x.shape)}). Fix the input or '
            'set in_channels.')
    hw = (x.shape[2], x.shape[3])
    for i, (grid, kv_grid) in enumerate(token_grids(specs, hw)):
        if min(grid) < 1 or min(kv_grid) < 1:
            size = min_input_size(specs)
            raise ValueError(
                f'Input of size {hw[0]}x{hw[1]} is too small: stage {i} gets '
                f'a {grid[0]}x{grid[1]} token grid (k/v grid '
                f'{kv_grid[0]}x{kv_grid[1]}). The minimum input size is '
                f'{size}x{size}.')


def layer_depth(depths: Sequence[int], param_name: str,
                prefix: str = '') -> Tuple[int, int]:
    """The layer-wise depth of a CvT parameter (layer-wise lr decay).

    The blocks of all stages count in order (1, 2, ...); a stage's token
    embedding, class token and position embedding sit just below its first
    block (the first stage's at 0, the lowest); the final and output norms
    and anything outside the backbone (the head) are the highest.

    Args:
        depths (Sequence[int]): Blocks per stage.
        param_name (str): The name of the parameter.
        prefix (str): The prefix of the backbone's parameters, e.g.
            ``'backbone.'``. Defaults to ''.

    Returns:
        Tuple[int, int]: The depth of the parameter and the number of
        depths.
    """
    num_layers = sum(depths) + 2
    if not param_name.startswith(prefix):
        return num_layers - 1, num_layers  # head
    parts = param_name[len(prefix):].split('.')
    if parts[0] != 'stages':
        return num_layers - 1, num_layers  # norm, out_norm{i}
    stage = int(parts[1])
    before = sum(depths[:stage])  # blocks of the earlier stages
    if parts[2] == 'blocks':
        return before + int(parts[3]) + 1, num_layers
    return before, num_layers  # patch_embed, cls_token, pos_embed
