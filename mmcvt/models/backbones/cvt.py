# Copyright (c) mmcvt contributors. All rights reserved.
"""CvT: Convolutional vision Transformer, as an OpenMMLab backbone.

Paper: "CvT: Introducing Convolutions to Vision Transformers"
(Wu et al., ICCV 2021, https://arxiv.org/abs/2103.15808).

The numerics are those of the official ``lib/models/cls_cvt.py``:
QuickGELU, LayerNorm ``eps=1e-5``, the attention scale ``dim ** -0.5`` over
the FULL width, the class token joined to q, k and v after the convolutional
projection, drop-path ``linspace(0, rate, depth)`` per stage. Parameter names
mirror the official ones under ``stages.{i}``; official and HuggingFace
checkpoints convert as they load (:mod:`mmcvt.models.utils.ckpt_convert`).

The file reads like the paper: token embedding, convolutional projection,
attention, MLP, block, stage, backbone. Each layer's forward is the official
math plus one branch, ``if plan.fast:``, to its fast form. ``CvT.forward``
decides the plan once (:func:`~mmcvt.models.layers.decide_plan`) and hands it
down with ``hw_shape``; the fast forms and every condition that picks one
are in :mod:`mmcvt.models.layers.fast_paths`.
"""
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.utils import to_2tuple
from torch.nn.modules.batchnorm import _BatchNorm

from mmcvt.registry import MODELS
from ..layers import (
    REFERENCE_PLAN,
    DropPath,
    Plan,
    build_activation,
    build_norm,
    init_official,
    resize_pos_embed,
)
from ..layers import fast_paths as fp
from ..layers.checkpoint import checkpoint
from ..layers.kernels import conv_with_bn_folded
from ..utils import cvt_spec
from ..utils.ckpt_convert import adapt_state_dict
from ..utils.cvt_spec import StageSpec

__all__ = [
    'CvT', 'ConvEmbed', 'DWConvBN', 'ConvAttention', 'Mlp', 'CvTBlock',
    'CvTStage'
]

# ---- Convolutional token embedding ------------------------------------------


class ConvEmbed(nn.Module):
    """Convolutional token embedding: ``Conv2d`` + ``LayerNorm`` on tokens.

    With ``kernel_size == stride`` and ``padding == 0`` it is the
    non-overlapping patch embedding of ViT (the paper's ablation).

    Args:
        in_channels (int): Input channels.
        embed_dims (int): Output channels / token width.
        kernel_size, stride, padding (int): The convolution's.
        norm_cfg (dict): Config of the token norm.
    """

    def __init__(self, in_channels: int, embed_dims: int, kernel_size: int,
                 stride: int, padding: int, norm_cfg: dict):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dims, kernel_size, stride,
                              padding)
        self.norm = build_norm(norm_cfg, embed_dims)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, tuple]:
        x = self.proj(x)  # (B, C_in, H, W) -> (B, C, H', W')
        hw_shape = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)  # (B, C, H', W') -> (B, H'*W', C)
        x = self.norm(x)
        return x, hw_shape


# ---- Convolutional projection -----------------------------------------------


class DWConvBN(nn.Module):
    """Depth-wise ``Conv2d`` + ``BatchNorm2d``: the ``'dw_bn'`` projection.

    Its fast form (:func:`fast_paths.dw_conv_bn`) folds the BatchNorm into
    the convolution in eval mode and recomputes its input in the backward
    in training: the same function, parameters and state dict.
    :meth:`fuse` folds the BatchNorm permanently for deployment.
    """

    def __init__(self, dims: int, kernel_size: int, stride: int,
                 padding: int):
        super().__init__()
        self.conv = nn.Conv2d(dims, dims, kernel_size, stride, padding,
                              groups=dims, bias=False)
        self.bn = nn.BatchNorm2d(dims)

    def forward(self, x: torch.Tensor,
                plan: Plan = REFERENCE_PLAN) -> torch.Tensor:
        if plan.fast:
            return fp.dw_conv_bn(self.conv, self.bn, x, plan)
        return self.bn(self.conv(x))  # (B, C, H, W) -> (B, C, H', W')

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold ``bn`` (running statistics) into ``conv``; ``bn`` becomes an
        ``Identity``."""
        if not isinstance(self.bn, nn.Identity):
            self.conv = conv_with_bn_folded(self.conv, self.bn)
            self.bn = nn.Identity()


def build_projection(qkv_proj: str, dims: int, kernel_size: int, stride: int,
                     padding: int) -> Optional[nn.Module]:
    """The convolutional projection before a q/k/v linear: ``'dw_bn'``
    (depth-wise conv + BN), ``'avg'`` (average pooling) or ``'linear'``
    (None: the tokens go to the linear projection as they are)."""
    if qkv_proj == 'dw_bn':
        return DWConvBN(dims, kernel_size, stride, padding)
    if qkv_proj == 'avg':
        return nn.AvgPool2d(kernel_size, stride, padding, ceil_mode=True)
    return None


# ---- Attention, MLP, block --------------------------------------------------


class ConvAttention(nn.Module):
    """Multi-head attention with convolutional projections of q, k and v.

    Its fast form (:func:`fast_paths.attention`) is SDPA, or a chunked
    explicit attention where that is faster.

    Args:
        embed_dims (int): Token width (in and out).
        num_heads (int): Number of heads.
        qkv_bias (bool): Bias of the q, k, v linear projections.
        attn_drop (float): Dropout on the attention weights.
        proj_drop (float): Dropout after the output projection.
        qkv_proj (str): ``'dw_bn'``, ``'avg'`` (q keeps identity, as the
            official code) or ``'linear'`` (identity, no downsampling).
        kernel_size (int): Kernel of the conv projections.
        stride_q, stride_kv, padding_q, padding_kv (int): Strides and
            paddings of the q and the k/v projections.
        with_cls_token (bool): Whether the first token is a class token.
    """

    def __init__(self, embed_dims: int, num_heads: int, qkv_bias: bool = True,
                 attn_drop: float = 0., proj_drop: float = 0.,
                 qkv_proj: str = 'dw_bn', kernel_size: int = 3,
                 stride_q: int = 1, stride_kv: int = 2, padding_q: int = 1,
                 padding_kv: int = 1, with_cls_token: bool = False):
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

        self.conv_proj_q = build_projection(
            'linear' if qkv_proj == 'avg' else qkv_proj, embed_dims,
            kernel_size, stride_q, padding_q)
        self.conv_proj_k = build_projection(qkv_proj, embed_dims, kernel_size,
                                            stride_kv, padding_kv)
        self.conv_proj_v = build_projection(qkv_proj, embed_dims, kernel_size,
                                            stride_kv, padding_kv)

        self.proj_q = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.proj_k = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.proj_v = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)

        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)

    @staticmethod
    def _conv_project(proj: Optional[nn.Module], x: torch.Tensor,
                      plan: Plan) -> torch.Tensor:
        if isinstance(proj, DWConvBN):
            x = proj(x, plan)  # (B, C, H, W) -> (B, C, H', W')
        elif proj is not None:
            x = proj(x)
        return x.flatten(2).transpose(1, 2)  # (B, C, H', W') -> (B, H'*W', C)

    def qkv(self, x: torch.Tensor, hw_shape: Tuple[int, int],
            plan: Plan = REFERENCE_PLAN) -> Tuple[torch.Tensor, ...]:
        """q, k and v, each ``(B, nh, T, hd)``: T = Tq for q, Tkv for k, v
        (with the class token first when there is one)."""
        x = fp.qkv_input(x, plan)
        if self.with_cls_token:
            # (B, 1+H*W, C) -> (B, 1, C), (B, H*W, C)
            cls_token, x = x[:, :1], x[:, 1:]
        # (B, H*W, C) -> (B, C, H*W) -> (B, C, H, W); a view, no copy
        x = x.transpose(1, 2).unflatten(2, hw_shape)

        q = self._conv_project(self.conv_proj_q, x, plan)  # (B, Tq, C)
        k = self._conv_project(self.conv_proj_k, x, plan)  # (B, Tkv, C)
        v = self._conv_project(self.conv_proj_v, x, plan)  # (B, Tkv, C)

        if self.with_cls_token:
            # class token joins AFTER the conv projection: (B, 1+T, C)
            q = torch.cat((cls_token, q), dim=1)
            k = torch.cat((cls_token, k), dim=1)
            v = torch.cat((cls_token, v), dim=1)

        # (B, T, C) -> (B, T, nh, hd) -> (B, nh, T, hd)
        heads = (self.num_heads, self.head_dims)
        return tuple(
            fp.linear(layer, t, plan).unflatten(-1, heads).transpose(1, 2)
            for layer, t in ((self.proj_q, q), (self.proj_k, k),
                             (self.proj_v, v)))

    @torch.no_grad()
    def attention_weights(self, x: torch.Tensor,
                          hw_shape: Tuple[int, int]) -> torch.Tensor:
        """The attention of this layer's input ``x``: ``softmax(q k^T *
        scale)``, ``(B, nh, Tq, Tkv)``, as the reference path computes it
        (without dropout), for inspection."""
        q, k, _ = self.qkv(x, hw_shape)
        return ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)

    def forward(self, x: torch.Tensor, hw_shape: Tuple[int, int],
                plan: Plan = REFERENCE_PLAN) -> torch.Tensor:
        q, k, v = self.qkv(x, hw_shape, plan)  # (B, nh, T, hd)
        if plan.fast:
            x = fp.attention(q, k, v, self.scale, self.attn_drop, plan)
        else:
            attn = (q @ k.transpose(-2, -1)) * self.scale  # (B, nh, Tq, Tkv)
            attn = self.attn_drop(attn.softmax(dim=-1))
            x = attn @ v  # (B, nh, Tq, hd)
        x = x.transpose(1, 2).flatten(2)  # (B, nh, Tq, hd) -> (B, Tq, C)
        return self.proj_drop(fp.linear(self.proj, x, plan))


class Mlp(nn.Module):
    """Two-layer MLP: ``fc1 -> act -> drop -> fc2 -> drop``.

    Its fast form (:func:`fast_paths.mlp`) computes QuickGELU between the
    two linears as one fused ``silu`` with ``a = 1.702`` folded into the
    weights, recomputed in the backward.
    """

    def __init__(self, in_features: int, hidden_features: int, act_cfg: dict,
                 drop: float = 0.):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = build_activation(act_cfg)
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor,
                plan: Plan = REFERENCE_PLAN) -> torch.Tensor:
        if plan.fast:
            return fp.mlp(self, x, plan)
        x = self.drop(self.act(self.fc1(x)))  # (..., C) -> (..., C_hid)
        return self.drop(self.fc2(x))  # (..., C_hid) -> (..., C)


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

    def __init__(self, embed_dims: int, num_heads: int, mlp_ratio: float = 4.,
                 qkv_bias: bool = True, drop_rate: float = 0.,
                 attn_drop_rate: float = 0., drop_path_rate: float = 0.,
                 act_cfg: dict = dict(type='QuickGELU'),
                 norm_cfg: dict = dict(type='LN', eps=1e-5), **attn_kwargs):
        super().__init__()
        self.norm1 = build_norm(norm_cfg, embed_dims)
        self.attn = ConvAttention(embed_dims, num_heads, qkv_bias,
                                  attn_drop_rate, drop_rate, **attn_kwargs)
        self.drop_path = DropPath(
            drop_path_rate) if drop_path_rate > 0. else nn.Identity()
        self.norm2 = build_norm(norm_cfg, embed_dims)
        self.mlp = Mlp(embed_dims, int(embed_dims * mlp_ratio), act_cfg,
                       drop_rate)

    def forward(self, x: torch.Tensor, hw_shape: Tuple[int, int],
                plan: Plan = REFERENCE_PLAN) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), hw_shape, plan))
        if plan.fast:  # its fast form: in CPU inference over chunks of tokens
            return fp.mlp_residual(x, self.norm2, self.mlp, self.drop_path,
                                   plan)
        return x + self.drop_path(self.mlp(self.norm2(x)))


# ---- Stage ------------------------------------------------------------------


class CvTStage(nn.Module):
    """One CvT stage: token embedding, optional class token and position
    embedding, then ``spec.depth`` blocks.

    Args:
        in_channels (int): Input channels of the token embedding.
        spec (StageSpec): The stage's settings.
        pos_embed_shape (tuple, optional): Token grid of the learnable
            position embedding; None when ``spec.pos_embed`` is False.
        drop_rate, attn_drop_rate (float): Dropout rates.
        norm_cfg, act_cfg (dict): Token norms, MLP activation.
        with_cp (bool): Gradient checkpointing per block. Defaults to False.
    """

    def __init__(self, in_channels: int, spec: StageSpec,
                 pos_embed_shape: Optional[Tuple[int, int]], drop_rate: float,
                 attn_drop_rate: float, norm_cfg: dict, act_cfg: dict,
                 with_cp: bool = False):
        super().__init__()
        self.with_cp = with_cp
        dims = spec.embed_dims
        self.patch_embed = ConvEmbed(in_channels, dims, spec.patch_size,
                                     spec.patch_stride, spec.patch_padding,
                                     norm_cfg)
        self.cls_token = nn.Parameter(torch.zeros(
            1, 1, dims)) if spec.cls_token else None
        self.pos_embed_shape = pos_embed_shape
        self.pos_embed = None if pos_embed_shape is None else nn.Parameter(
            torch.zeros(1, pos_embed_shape[0] * pos_embed_shape[1], dims))
        self.init_tokens()
        self.pos_drop = nn.Dropout(p=drop_rate)
        rates = torch.linspace(
            0, spec.drop_path_rate, spec.depth, device='cpu').tolist()
        self.blocks = nn.ModuleList([
            CvTBlock(
                dims, spec.num_heads, spec.mlp_ratio, spec.qkv_bias,
                drop_rate, attn_drop_rate, drop_path_rate=rate,
                act_cfg=act_cfg, norm_cfg=norm_cfg, qkv_proj=spec.qkv_proj,
                kernel_size=spec.proj_kernel, stride_q=spec.proj_stride_q,
                stride_kv=spec.proj_stride_kv,
                padding_q=spec.proj_padding_q,
                padding_kv=spec.proj_padding_kv,
                with_cls_token=spec.cls_token) for rate in rates
        ])

    @property
    def num_extra_tokens(self) -> int:
        return 0 if self.cls_token is None else 1

    def init_tokens(self) -> None:
        """The official initialisation of the class token and position
        embedding: truncated normal, ``std=0.02``."""
        for token in (self.cls_token, self.pos_embed):
            if token is not None:
                nn.init.trunc_normal_(token, std=.02)

    def forward(self, x: torch.Tensor,
                plan: Plan = REFERENCE_PLAN) -> Tuple[torch.Tensor, tuple]:
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
                x = checkpoint(block, x, hw_shape, plan)
            else:
                x = block(x, hw_shape, plan)
        return x, hw_shape


# ---- The backbone -----------------------------------------------------------


@MODELS.register_module()
class CvT(BaseModule):
    """Convolutional vision Transformer (CvT).

    A PyTorch implementation of `CvT: Introducing Convolutions to Vision
    Transformers <https://arxiv.org/abs/2103.15808>`_, numerically identical
    to the official code, usable as an mmpretrain / mmdet / mmseg backbone.

    Args:
        arch (str | dict): A name in :attr:`arch_zoo` or a dict of
            ``embed_dims``, ``num_heads``, ``depths`` and ``drop_path_rates``
            (one entry per stage each). Defaults to ``'13'``.
        in_channels (int): Input image channels. Defaults to 3.
        out_indices (Sequence[int] | int): Stages to output, negative indices
            allowed; later stages are not computed. Defaults to ``(2, )``.
        out_type (str): Output of the LAST stage: ``'cls_token'`` (final norm
            on the class token, ``(B, C)``), ``'featmap'`` (``(B, C, H, W)``),
            ``'avg_featmap'`` (final norm on the patch tokens, then their
            mean) or ``'raw'`` (``(B, N, C)`` tokens with the class token).
            Earlier stages give ``(B, C, H, W)``. Defaults to ``'cls_token'``.
        patch_sizes, patch_strides, patch_paddings (int | Sequence[int]):
            Kernel, stride and padding of the token embeddings, per stage
            (as every argument typed ``X | Sequence[X]``: one value for all
            stages or one each). Defaults to ``(7, 3, 3)``, ``(4, 2, 2)``,
            ``(2, 1, 1)``.
        patch_embed (str | Sequence[str]): ``'conv'`` (overlapping) or
            ``'patch'`` (non-overlapping: kernel = stride, no padding).
            Defaults to ``'conv'``.
        qkv_proj (str | Sequence[str]): Projection of q, k, v: ``'dw_bn'``
            (depth-wise conv + BN), ``'avg'`` (average pooling of k and v)
            or ``'linear'`` (none). Defaults to ``'dw_bn'``.
        proj_kernel, proj_padding_q, proj_padding_kv, stride_q, stride_kv
            (int | Sequence[int]): Kernel, paddings and strides of the q and
            k/v projections. Defaults to 3, 1, 1, 1, 2.
        cls_token (bool | Sequence[bool]): Whether a stage has a class token.
            Defaults to ``(False, False, True)``.
        pos_embed (bool | Sequence[bool]): Whether a stage adds a learnable
            position embedding (sized by ``img_size``, bicubically resized
            for other inputs). Defaults to False.
        mlp_ratio (float | Sequence[float]): MLP width ratio. Defaults to 4.
        qkv_bias (bool | Sequence[bool]): q, k, v biases. Defaults to True.
        img_size (int | Sequence[int]): Input size that sizes the position
            embeddings. Defaults to 224.
        drop_rate (float): Dropout rate. Defaults to 0.
        attn_drop_rate (float): Attention dropout rate. Defaults to 0.
        drop_path_rate (float | Sequence[float], optional): Maximum
            stochastic depth rate: None, the arch's; a float, the LAST
            stage's (the others keep the arch's); a sequence, every
            stage's. Within a stage ``linspace(0, rate, depth)``.
            Defaults to None.
        norm_cfg (dict): Token norms. Defaults to LN with ``eps=1e-5``.
        act_cfg (dict): MLP activation. Defaults to QuickGELU.
        final_norm (bool): Whether the ``'cls_token'`` / ``'avg_featmap'``
            outputs get the final norm ``norm``. Defaults to True.
        out_norm (bool): Whether each ``(B, C, H, W)`` output gets a
            LayerNorm (``out_norm{i}``, dense prediction). Defaults to False.
        frozen_stages (int): Freeze the first ``n`` stages; ``n ==
            num_stages`` also freezes ``norm``; -1 none. Defaults to -1.
        norm_eval (bool): BatchNorms in eval mode while training.
            Defaults to False.
        with_cp (bool): Gradient checkpointing per block. Defaults to False.
        init_cfg (dict | list[dict], optional): Initialisation config, e.g.
            ``dict(type='Pretrained', checkpoint=...)``; official and
            HuggingFace checkpoints convert on the fly. Defaults to None.

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

    # experiments/imagenet/cvt/cvt-{13,21,w24}-*.yaml of microsoft/CvT; the
    # other settings (the defaults of __init__) are the same in all three.
    # drop_path_rates: the yamls' DROP_PATH_RATE, the maximum of each stage.
    # Parameters and MACs: README, "The backbone".
    arch_zoo: Dict[str, dict] = {
        **dict.fromkeys(['13', 'cvt-13'], dict(
            embed_dims=[64, 192, 384], num_heads=[1, 3, 6],
            depths=[1, 2, 10], drop_path_rates=[0., 0., 0.1])),
        **dict.fromkeys(['21', 'cvt-21'], dict(
            embed_dims=[64, 192, 384], num_heads=[1, 3, 6],
            depths=[1, 4, 16], drop_path_rates=[0., 0., 0.1])),
        **dict.fromkeys(['w24', 'cvt-w24'], dict(
            embed_dims=[192, 768, 1024], num_heads=[3, 12, 16],
            depths=[2, 2, 20], drop_path_rates=[0., 0., 0.3])),
    }  # yapf: disable
    OUT_TYPES = cvt_spec.OUT_TYPES

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
        self.arch_name, self.arch_settings = cvt_spec.parse_arch(
            arch, self.arch_zoo)
        self.specs: List[StageSpec] = cvt_spec.build_stage_specs(
            self.arch_settings, drop_path_rate=drop_path_rate,
            patch_sizes=patch_sizes, patch_strides=patch_strides,
            patch_paddings=patch_paddings, patch_embed=patch_embed,
            qkv_proj=qkv_proj, proj_kernel=proj_kernel,
            proj_padding_q=proj_padding_q, proj_padding_kv=proj_padding_kv,
            stride_q=stride_q, stride_kv=stride_kv, cls_token=cls_token,
            pos_embed=pos_embed, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias)
        self.num_stages = num_stages = len(self.specs)
        self.out_indices = cvt_spec.parse_out_indices(out_indices,
                                                      num_stages)
        cvt_spec.check_args(self.specs, self.out_indices, in_channels,
                            out_type, frozen_stages, drop_rate,
                            attn_drop_rate, img_size)
        self.embed_dims = [s.embed_dims for s in self.specs]
        self.num_heads = [s.num_heads for s in self.specs]
        self.depths = [s.depth for s in self.specs]
        self.drop_path_rates = [s.drop_path_rate for s in self.specs]
        self.in_channels = in_channels
        self.img_size = to_2tuple(img_size)
        self.out_type = out_type
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.fused = True  # the fast paths (set_fused)
        last = num_stages - 1

        self.stages = nn.ModuleList()
        grid, channels = self.img_size, in_channels
        for spec in self.specs:
            grid = spec.grid(grid)  # the position embeddings' token grid
            self.stages.append(
                CvTStage(channels, spec,
                         tuple(grid) if spec.pos_embed else None, drop_rate,
                         attn_drop_rate, norm_cfg, act_cfg, with_cp))
            channels = spec.embed_dims

        # final norm: only when the last stage's output uses it
        self.final_norm = final_norm
        self.norm = build_norm(norm_cfg, self.embed_dims[-1]) if (
            final_norm and last in self.out_indices
            and out_type in ('cls_token', 'avg_featmap')) else None

        # extra norms on the (B, C, H, W) outputs for dense prediction
        self.out_norm = out_norm
        for i in self.out_indices:
            if out_norm and (i != last or out_type == 'featmap'):
                self.add_module(f'out_norm{i}',
                                build_norm(norm_cfg, self.embed_dims[i]))

        # official / HuggingFace checkpoints convert as they load
        self._register_load_state_dict_pre_hook(self._adapt_checkpoint)
        self._freeze_stages()

    @classmethod
    def variant_name(cls, depths: Sequence[int],
                     embed_dims: Sequence[int]) -> Optional[str]:
        """Name (``'13'``, ``'21'``, ``'w24'``) of the zoo arch with these
        depths and widths, or None."""
        return cvt_spec.variant_name(cls.arch_zoo, depths, embed_dims)

    display_name = staticmethod(cvt_spec.display_name)

    @property
    def num_extra_tokens(self) -> int:
        """Class tokens before the patch tokens of the last stage's
        ``'raw'`` output (what mmpretrain's ``vis_cam --vit-like`` drops)."""
        return self.stages[-1].num_extra_tokens

    @property
    def patch_sizes(self) -> List[int]:
        return [s.patch_size for s in self.specs]

    @property
    def with_cls_token(self) -> List[bool]:
        return [s.cls_token for s in self.specs]

    def _adapt_checkpoint(self, state_dict, prefix, *args) -> None:
        adapt_state_dict(self, state_dict, prefix)

    def _freeze_stages(self) -> None:
        frozen = range(min(self.frozen_stages, self.num_stages))
        modules = [self.stages[i] for i in frozen] + [
            getattr(self, f'out_norm{i}') for i in frozen
            if hasattr(self, f'out_norm{i}')
        ]
        if self.frozen_stages == self.num_stages and self.norm is not None:
            modules.append(self.norm)
        for m in modules:
            m.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> 'CvT':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def init_weights(self) -> None:
        """The official initialisation (``init_official``, trunc-normal class
        token and position embeddings), or ``init_cfg``'s ``Pretrained``
        weights."""
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [
            self.init_cfg]
        pretrained = [c.get('checkpoint') for c in cfgs if isinstance(c, dict)
                      and c.get('type') == 'Pretrained']
        if pretrained:
            try:
                super().init_weights()
            except ValueError as e:  # name the file the problem is in
                raise ValueError(f'{pretrained[0]}: {e}') from e
            return

        self.apply(init_official)
        for stage in self.stages:
            stage.init_tokens()
        if self.init_cfg is not None:
            super().init_weights()  # a non-Pretrained init_cfg on top
        else:
            self._is_init = True

    def get_layer_depth(self, param_name: str,
                        prefix: str = '') -> Tuple[int, int]:
        """``(depth, number of depths)`` of a parameter for mmpretrain's
        ``LearningRateDecayOptimWrapperConstructor``: see
        :func:`mmcvt.models.utils.cvt_spec.layer_depth`."""
        return cvt_spec.layer_depth(self.depths, param_name, prefix)

    def switch_to_deploy(self) -> 'CvT':
        """Fold every ``'dw_bn'`` projection's BatchNorm into its depth-wise
        conv (uses the running statistics; outputs match eval mode)."""
        for m in self.modules():
            if isinstance(m, DWConvBN):
                m.fuse()
        return self

    fuse_bn = switch_to_deploy

    @property
    def deploy(self) -> bool:
        """Whether every projection BatchNorm is folded
        (:meth:`switch_to_deploy`)."""
        return not any(
            isinstance(m, DWConvBN) and not isinstance(m.bn, nn.Identity)
            for m in self.modules())

    def set_fused(self, mode: bool = True) -> 'CvT':
        """Turn the fast paths on (default) or off (every layer runs the
        official formulation step by step): the same outputs and gradients
        within float rounding, the same parameters and state dict."""
        self.fused = mode
        return self

    def _bypassed_modules(self) -> Iterator[nn.Module]:
        """The modules a fast path may compute without calling them: all
        inside the blocks but the blocks, attentions and projections, which
        are called as usual (``fast_paths.decide_plan``)."""
        stack = [block for stage in self.stages for block in stage.blocks]
        while stack:  # children(), not modules(): no names, no memo set
            m = stack.pop()
            stack.extend(m.children())
            if not isinstance(m, (CvTBlock, ConvAttention, DWConvBN)):
                yield m

    def min_input_size(self) -> int:
        """The smallest square input that gives tokens in every stage."""
        return cvt_spec.min_input_size(self.specs)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        cvt_spec.check_input(x, self.specs, self.in_channels,
                             self.stages[0].patch_embed.proj.weight.dtype)
        # how every layer computes this forward, decided once
        plan = fp.decide_plan(x, self.fused, self._bypassed_modules())
        outs = []
        last_out = self.out_indices[-1]  # later stages are not computed
        for i, stage in enumerate(self.stages[:last_out + 1]):
            x, hw_shape = stage(x, plan)  # (B, N, C), N = extra + h*w
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
        norm = self.norm or nn.Identity()
        if out_type == 'cls_token':
            return norm(x[:, 0])  # (B, 1+h*w, C) -> (B, C)
        patch_tokens = x[:, stage.num_extra_tokens:]  # (B, h*w, C)
        if out_type == 'avg_featmap':
            return norm(patch_tokens).mean(dim=1)  # (B, h*w, C) -> (B, C)
        # featmap
        patch_tokens = getattr(self, f'out_norm{i}', nn.Identity())(
            patch_tokens)
        # (B, h*w, C) -> (B, C, h*w) -> (B, C, h, w); one copy so that
        # necks / heads get a standard contiguous NCHW map
        return patch_tokens.transpose(1, 2).unflatten(2,
                                                      hw_shape).contiguous()
