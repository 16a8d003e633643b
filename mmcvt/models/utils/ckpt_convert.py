# Copyright (c) mmcvt contributors. All rights reserved.
"""CvT checkpoint formats: detection, the official (microsoft/CvT) and
HuggingFace (``transformers``) key rules, arch inference, validation, and
the load-time conversion that lets ``CvT`` read any of them.

Layouts:

====================================  =======================================
official                              mmcvt (mmpretrain classifier)
====================================  =======================================
``stage{i}.patch_embed.proj``         ``backbone.stages.{i}.patch_embed.proj``
``stage{i}.blocks.{j}.attn...``       ``backbone.stages.{i}.blocks.{j}...``
``stage{i}.cls_token``                ``backbone.stages.{i}.cls_token``
``norm``                              ``backbone.norm``
``head``                              ``head.fc`` (mmpretrain LinearClsHead)
====================================  =======================================

HuggingFace ``CvtForImageClassification`` keys (``cvt.encoder.stages.*``,
``layernorm.*``, ``classifier.*``) map to the same names by the rules below.

Entry points: :func:`convert_checkpoint` (any layout -> mmpretrain layout),
:func:`infer_arch`, and :func:`adapt_state_dict`, which ``CvT`` runs as its
load-state-dict pre-hook.
"""
import re
from collections import OrderedDict
from typing import Optional

import torch
import torch.nn as nn
from mmengine.logging import print_log

from ..layers import resize_pos_embed

__all__ = [
    'unwrap', 'detect_format', 'convert_official_to_mmcvt',
    'convert_hf_to_mmcvt', 'strip_backbone', 'convert_checkpoint',
    'infer_arch', 'adapt_state_dict'
]

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
_BLOCK_PARAMS = ('norm1.weight', 'attn.proj_q.weight', 'attn.proj_k.weight',
                 'attn.proj_v.weight', 'attn.proj.weight', 'norm2.weight',
                 'mlp.fc1.weight', 'mlp.fc2.weight')


def unwrap(state_dict: dict) -> dict:
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


def _detect(state_dict: dict) -> Optional[str]:
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
    fmt = _detect(unwrap(state_dict))
    if fmt is None:
        raise ValueError(
            'Unrecognised checkpoint: expected official CvT keys '
            '(stage0.patch_embed.proj.weight, ...), HuggingFace keys '
            '(cvt.encoder.stages.0...) or mmcvt keys (backbone.stages...); '
            f'got {list(state_dict)[:5]}...')
    return fmt


def _unknown_keys_error(layout: str, unknown: list) -> ValueError:
    return ValueError(f'Unexpected keys for {layout} checkpoint: '
                      f'{unknown[:10]}' +
                      (' ...' if len(unknown) > 10 else ''))


def convert_official_to_mmcvt(state_dict: dict) -> 'OrderedDict':
    """Convert an official ``microsoft/CvT`` checkpoint to the mmpretrain
    layout (``backbone.stages.*``, ``backbone.norm.*``, ``head.fc.*``).

    Raises:
        ValueError: On keys that are not part of an official CvT model.
    """
    state_dict = unwrap(state_dict)
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
        raise _unknown_keys_error('an official CvT', unknown)
    _validate(out)
    return out


def _hf_key(key: str) -> Optional[str]:
    """mmcvt name (without ``backbone.``) of a HuggingFace backbone key, or
    None."""
    for pattern, repl in _HF_RULES:
        new, n = re.subn(pattern, repl, key)
        if n:
            break
    else:
        if key.startswith('layernorm.'):
            return 'norm.' + key[len('layernorm.'):]
        return None
    if '.blocks.' not in new:
        return new
    head, rest = re.match(r'^(stages\.\d+\.blocks\.\d+\.)(.+)$', new).groups()
    for pattern, repl in _HF_BLOCK_RULES:
        rest, n = re.subn('^' + pattern, repl, rest)
        if n:
            # query / key / value -> q / k / v
            rest = re.sub(r'proj_(query|key|value)',
                          lambda mm: 'proj_' + _QKV[mm[1]], rest)
            return head + rest
    return None


def convert_hf_to_mmcvt(state_dict: dict) -> 'OrderedDict':
    """Convert a HuggingFace ``transformers`` CvT checkpoint
    (``CvtForImageClassification`` or ``CvtModel``) to the mmpretrain layout
    (``backbone.stages.*``, ``backbone.norm.*``, ``head.fc.*``).

    Raises:
        ValueError: On keys that are not part of a HuggingFace CvT model.
    """
    state_dict = unwrap(state_dict)
    out, unknown = OrderedDict(), []
    for key, value in state_dict.items():
        if key.startswith('classifier.'):
            out['head.fc.' + key[len('classifier.'):]] = value
            continue
        new = _hf_key(key)
        if new is None:
            unknown.append(key)
        else:
            out['backbone.' + new] = value
    if unknown:
        raise _unknown_keys_error('a HuggingFace CvT', unknown)
    _validate(out)
    return out


def strip_backbone(state_dict: dict, drop_head: bool = True) -> OrderedDict:
    """The mmpretrain layout without the ``backbone.`` prefix (and without
    ``head.*`` when ``drop_head``)."""
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
    state_dict = unwrap(state_dict)
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


def _indices(pattern: str, keys) -> list:
    return sorted({int(m.group(1)) for m in map(pattern.match, keys) if m})


def infer_arch(state_dict: dict, strict: bool = True) -> dict:
    """Infer ``embed_dims``, ``depths`` and other settings from a backbone
    state dict in mmcvt layout (with or without the ``backbone.`` prefix).

    Args:
        state_dict (dict): The state dict.
        strict (bool): Raise ``ValueError`` on an incomplete / inconsistent
            structure. Defaults to True.
    """
    sd = strip_backbone(state_dict, drop_head=True)
    stage_ids = _indices(re.compile(r'^stages\.(\d+)\.'), sd)
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
        blocks = _indices(re.compile(rf'^stages\.{i}\.blocks\.(\d+)\.'), sd)
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


def _validate(converted: dict) -> None:
    if not any(k.startswith('backbone.stages.') for k in converted):
        raise ValueError('Corrupt or empty CvT checkpoint: no stage weights '
                         'found.')
    infer_arch(converted, strict=True)


# ---------------------------------------------------------------------------
# load time: what CvT's load-state-dict pre-hook does
# ---------------------------------------------------------------------------


def adapt_state_dict(model: nn.Module, state_dict: dict,
                     prefix: str) -> None:
    """Prepare the keys under ``prefix`` of ``state_dict`` (in place) for
    loading into the CvT ``model``: official / HuggingFace keys converted,
    the variant checked, position embeddings resized to the model's grid,
    any other tensor of another shape refused.

    Raises:
        ValueError: For keys of no known layout, a checkpoint of another
            variant, or a tensor whose shape differs from the model's.
    """
    keys = [k for k in state_dict if k.startswith(prefix)]
    if not keys:
        return
    local = OrderedDict((k[len(prefix):], state_dict[k]) for k in keys)
    fmt = _detect(local)
    if fmt is None:
        raise ValueError(
            'Unrecognised CvT checkpoint: none of its keys look like '
            'mmcvt (stages.*), official CvT (stage0.*) or '
            'HuggingFace (cvt.encoder.stages.*) keys; first keys: '
            f'{list(local)[:5]}. If it is wrapped, load with '
            "init_cfg=dict(type='Pretrained', prefix=...).")
    if fmt != 'mmcvt':
        converted = strip_backbone(
            convert_checkpoint(local, fmt), drop_head=True)
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
    _check_arch(model, local)
    _check_shapes(model, state_dict, prefix)


def _check_arch(model: nn.Module, state_dict: dict) -> None:
    """Raise if a checkpoint's stage structure belongs to another arch."""
    if not any(k.startswith('stages.') for k in state_dict):
        return
    ckpt = infer_arch(state_dict, strict=False)
    if (ckpt['depths'] == model.depths
            and ckpt['embed_dims'] == model.embed_dims):
        return
    name = type(model).variant_name(ckpt['depths'], ckpt['embed_dims'])
    looks = (f'{type(model).display_name(name)} (arch="{name}")'
             if name else 'a custom CvT')
    raise ValueError(
        f'Checkpoint does not match this {model.arch_name} '
        f'backbone (depths={model.depths}, embed_dims={model.embed_dims}):'
        f' it looks like {looks} with depths={ckpt["depths"]}, '
        f'embed_dims={ckpt["embed_dims"]}. Build the backbone with the '
        'matching arch.')


def _check_shapes(model: nn.Module, state_dict: dict, prefix: str) -> None:
    """Resize position embeddings to the model's grid; raise on any other
    tensor whose shape differs from the model's (loading would leave that
    layer at its random initialisation)."""
    own = dict(model.named_parameters())
    own.update(model.named_buffers())
    mismatched = []
    for name, target in own.items():
        key = prefix + name
        value = state_dict.get(key)
        if not isinstance(value, torch.Tensor) or value.shape == target.shape:
            continue
        stage = re.match(r'^stages\.(\d+)\.pos_embed$', name)
        side = int(round(value.shape[1]**0.5)) if value.dim() == 3 else 0
        if (stage and value.dim() == 3 and value.shape[2] == target.shape[2]
                and side * side == value.shape[1]):
            dst = model.stages[int(stage[1])].pos_embed_shape
            state_dict[key] = resize_pos_embed(value, (side, side), dst)
            print_log(
                f'CvT: resized {key} from a {side}x{side} to a '
                f'{dst[0]}x{dst[1]} grid (bicubic).',
                logger='current')
            continue
        mismatched.append(f'{key}: checkpoint {tuple(value.shape)}, '
                          f'model {tuple(target.shape)}')
    if mismatched:
        raise ValueError(
            f'Checkpoint tensors do not fit this {model.arch_name} '
            'backbone: ' + '; '.join(mismatched[:8]) +
            (' ...' if len(mismatched) > 8 else '') + '. Build the '
            'backbone with the settings the checkpoint was trained with '
            '(mlp_ratio, qkv_proj, patch sizes, in_channels, ...), or '
            'remove these keys from the checkpoint to train them anew.')
