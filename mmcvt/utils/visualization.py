# Copyright (c) mmcvt contributors. All rights reserved.
"""What a CvT looks at: the attention of every stage (read through forward
hooks, ``ConvAttention.attention_weights``, without changing the model's
forward) and the stage feature maps, as pictures over the input image.

Entry points: :func:`attention_maps`, :func:`cls_token_attention`,
:func:`query_attention`, :func:`feature_pca` and :func:`overlay`; the
command line is ``tools/visualization/vis_attention.py``.
"""
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    'attention_maps', 'cls_token_attention', 'query_attention',
    'feature_maps', 'feature_pca', 'overlay', 'strip'
]


@torch.no_grad()
def attention_maps(backbone: torch.nn.Module, x: torch.Tensor) -> List[dict]:
    """The attention of every block, stage by stage, for the images ``x``.

    Returns:
        list[dict]: Per block, in order: ``stage``, ``block``, ``attn``
        (``(B, heads, Tq, Tkv)``, rows summing to 1), ``grid`` (the query
        token grid), ``kv_grid`` (the key/value grid: the stride-2
        projection's) and ``extra`` (class tokens before the patch tokens).
    """
    from mmcvt.models.backbones.cvt import ConvAttention
    from mmcvt.models.utils import cvt_spec
    out, handles = [], []
    for i, stage in enumerate(backbone.stages):
        for j, block in enumerate(stage.blocks):
            attn = block.attn
            assert isinstance(attn, ConvAttention)

            def hook(module, args, output, i=i, j=j, extra=int(
                    attn.with_cls_token)):
                x, hw_shape = args[:2]  # (tokens, hw_shape, plan)
                out.append(
                    dict(
                        stage=i,
                        block=j,
                        attn=module.attention_weights(x, hw_shape),
                        grid=tuple(hw_shape),
                        kv_grid=backbone.specs[i].kv_grid(tuple(hw_shape)),
                        extra=extra))

            handles.append(attn.register_forward_hook(hook))
    try:
        last = backbone.out_indices
        backbone.out_indices = list(range(backbone.num_stages))
        backbone(x)
    finally:
        backbone.out_indices = last
        for h in handles:
            h.remove()
    grids = cvt_spec.token_grids(backbone.specs, tuple(x.shape[2:]))
    assert [m['grid'] for m in out if m['block'] == 0] == \
        [g for g, _ in grids]
    return out


def _kv_map(attn: torch.Tensor, info: dict) -> torch.Tensor:
    """``(B, heads, Tkv)`` rows -> ``(B, heads, kh, kw)``, class tokens
    dropped."""
    kh, kw = info['kv_grid']
    return attn[..., info['extra']:].unflatten(-1, (kh, kw))


def cls_token_attention(info: dict) -> torch.Tensor:
    """The class token's attention over the k/v patch grid of a block with
    a class token: ``(B, heads, kh, kw)``."""
    if not info['extra']:
        raise ValueError(f'stage {info["stage"]} has no class token; use '
                         'query_attention (--query) instead.')
    return _kv_map(info['attn'][:, :, 0], info)


def query_attention(info: dict, y: float, x: float) -> torch.Tensor:
    """The attention of the query token at relative position ``(y, x)`` (in
    [0, 1) of the image height / width) over the k/v patch grid:
    ``(B, heads, kh, kw)``."""
    h, w = info['grid']
    row, col = min(int(y * h), h - 1), min(int(x * w), w - 1)
    return _kv_map(info['attn'][:, :, info['extra'] + row * w + col], info)


@torch.no_grad()
def feature_maps(backbone: torch.nn.Module,
                 x: torch.Tensor) -> List[torch.Tensor]:
    """Every stage's ``(B, C, h, w)`` map (class tokens dropped)."""
    last, out_type = backbone.out_indices, backbone.out_type
    try:
        backbone.out_indices = list(range(backbone.num_stages))
        backbone.out_type = 'featmap'
        return list(backbone(x))
    finally:
        backbone.out_indices, backbone.out_type = last, out_type


def feature_pca(feat: torch.Tensor) -> np.ndarray:
    """A ``(C, h, w)`` map's first three principal components as an
    ``(h, w, 3)`` uint8 RGB picture (each component min-max scaled)."""
    c, h, w = feat.shape
    # on the CPU: the model may run on a GPU, and numpy reads host memory
    flat = feat.detach().cpu().reshape(c, h * w).T.double()  # (h*w, C)
    flat = flat - flat.mean(0)
    _, _, v = torch.linalg.svd(flat, full_matrices=False)
    comps = flat @ v[:3].T  # (h*w, k), k <= 3
    comps = F.pad(comps, (0, 3 - comps.shape[1]))
    lo, hi = comps.min(0).values, comps.max(0).values
    rgb = (comps - lo) / (hi - lo).clamp_min(1e-12)
    return (rgb.reshape(h, w, 3).numpy() * 255).round().astype(np.uint8)


def overlay(image: np.ndarray,
            heat: torch.Tensor,
            alpha: float = 0.5,
            cmap: str = 'jet') -> np.ndarray:
    """``heat`` (``(h, w)``, any scale) upsampled to the image (bilinear),
    min-max scaled, coloured and blended over the ``(H, W, 3)`` uint8
    ``image``."""
    import matplotlib
    H, W = image.shape[:2]
    heat = F.interpolate(
        heat.detach().cpu()[None, None].float(), size=(H, W), mode='bilinear',
        align_corners=False)[0, 0]
    heat = (heat - heat.min()) / (heat.max() - heat.min()).clamp_min(1e-12)
    colour = matplotlib.colormaps[cmap](heat.numpy())[..., :3] * 255
    return ((1 - alpha) * image + alpha * colour).round().astype(np.uint8)


def _nearest(panel: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """``panel`` resized to ``size`` = (H, W), nearest neighbour (the
    pixels stay sharp)."""
    from PIL import Image
    return np.asarray(
        Image.fromarray(panel).resize((size[1], size[0]), Image.NEAREST))


def strip(panels: List[np.ndarray],
          size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Panels side by side, each resized (nearest) to ``size`` = (H, W)."""
    size = size or panels[0].shape[:2]
    return np.concatenate([_nearest(p, size) for p in panels], axis=1)


def stack(panels: List[np.ndarray], scale: int = 1,
          gap: int = 0) -> np.ndarray:
    """``(H, W, 3)`` uint8 panels top to bottom, each enlarged ``scale``
    times (nearest), ``gap`` white rows between them, left-aligned on a
    white canvas as wide as the widest."""
    big = [
        _nearest(p, (p.shape[0] * scale, p.shape[1] * scale)) for p in panels
    ]
    width = max(p.shape[1] for p in big)
    height = sum(p.shape[0] for p in big) + gap * (len(big) - 1)
    canvas = np.full((height, width, 3), 255, np.uint8)
    top = 0
    for p in big:
        canvas[top:top + p.shape[0], :p.shape[1]] = p
        top += p.shape[0] + gap
    return canvas
