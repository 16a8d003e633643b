"""Every detection / segmentation config loads, builds its model, optimizer
and pipelines, and hands its detector / segmentor the strides they expect.

The configs inherit mmdet's / mmseg's own recipes through ``mmdet::`` /
``mmseg::`` bases; these tests pin what the CvT configs change on top: the
backbone (CvT-13 / CvT-21, stride 4/8/16 NCHW maps, class token kept inside
but not in the map, BatchNorm policy), the FPN wiring that turns three
backbone levels into the strides the heads need, and the no-decay rules.
"""
import glob
import math
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

import mmcvt  # noqa: F401  (compatibility fixes, registers mmcvt.CvT)
from mmcvt.models.backbones.cvt import CvT
from .tiny_dense import DET_DIR, SEG_DIR

DET_CONFIGS = sorted(glob.glob(osp.join(DET_DIR, '*.py')))
SEG_CONFIGS = sorted(glob.glob(osp.join(SEG_DIR, '*.py')))
ALL_CONFIGS = DET_CONFIGS + SEG_CONFIGS


def _id(path):
    return osp.basename(path)


def _models_registry(scope):
    init_default_scope(scope)
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    return MODELS


def _build(path):
    cfg = Config.fromfile(path)
    cfg.model.backbone.init_cfg = None  # no checkpoint on disk
    model = _models_registry(cfg.default_scope).build(cfg.model)
    return cfg, model


def _arch(path):
    return re.search(r'cvt-(13|21)', _id(path)).group(1)


def test_every_family_present():
    names = {_id(p) for p in ALL_CONFIGS}
    for arch in ('13', '21'):
        for name in (
                f'mask-rcnn_cvt-{arch}_fpn_1x_coco.py',
                f'mask-rcnn_cvt-{arch}_fpn_ms-crop-3x_coco.py',
                f'retinanet_cvt-{arch}_fpn_1x_coco.py',
                f'cvt-{arch}-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',
                f'cvt-{arch}-in1k-pre_fpn_8xb4-80k_ade20k-512x512.py'):
            assert name in names, name
    for d in (DET_DIR, SEG_DIR):
        assert osp.isfile(osp.join(d, 'README.md'))


@pytest.mark.parametrize('path', ALL_CONFIGS, ids=_id)
def test_config_loads_and_builds(path):
    with open(path) as f:
        text = f.read()
    # plain configs: inherit the toolkit bases, import nothing
    assert not re.search(r'^\s*(import|from)\s', text, re.M), path
    assert '_base_' in text
    cfg = Config.fromfile(path)
    assert 'custom_imports' not in cfg
    expected_scope = 'mmdet' if path in DET_CONFIGS else 'mmseg'
    assert cfg.default_scope == expected_scope  # from the bases

    backbone = cfg.model.backbone
    assert backbone.type == 'mmcvt.CvT'
    assert backbone.arch == _arch(path)
    assert backbone.out_type == 'featmap'
    assert tuple(backbone.cls_token) == (False, False, True)
    # the published ImageNet-1k 224 model of the variant, from the hub; no
    # prefix: the backbone reads every checkpoint layout itself
    assert backbone.init_cfg.type == 'Pretrained'
    assert 'prefix' not in backbone.init_cfg
    assert backbone.init_cfg.checkpoint == f'hf://microsoft/cvt-{_arch(path)}'
    # detection: 2 images / GPU -> keep the ImageNet BN statistics;
    # segmentation: 16 fixed-size crops -> train BN, SyncBN when distributed
    if expected_scope == 'mmdet':
        assert backbone.norm_eval is True
    else:
        assert backbone.norm_eval is False and cfg.sync_bn == 'torch'

    # the learning rate is set for 8 GPUs; --auto-scale-lr needs the total
    assert cfg.auto_scale_lr.base_batch_size == \
        8 * cfg.train_dataloader.batch_size

    cfg, model = _build(path)
    assert isinstance(model.backbone, CvT)
    assert model.backbone.arch_name.lower() == f'cvt-{_arch(path)}'
    # the class token exists (stage 3) and is used inside, and there is no
    # final norm: the last stage is a featmap output
    assert model.backbone.stages[2].cls_token is not None
    assert model.backbone.norm is None
    for i in model.backbone.out_indices:
        assert hasattr(model.backbone, f'out_norm{i}')

    # the pipelines of every split build in the config's scope
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        Compose(cfg[split].dataset.pipeline)

    # AdamW; no decay on norms (LN and the projections' BN), biases, the
    # class token; full decay on the weights of convs and linears
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    optimizer = optim_wrapper.optimizer
    assert type(optimizer).__name__ == 'AdamW'
    base_wd = cfg.optim_wrapper.optimizer.weight_decay
    if expected_scope == 'mmdet':
        assert cfg.optim_wrapper.optimizer.lr == 1e-4
        assert base_wd == 0.05
    wd = {
        id(p): g['weight_decay']
        for g in optimizer.param_groups for p in g['params']
    }
    named = dict(model.named_parameters())
    assert len(wd) == len(named)
    bb = 'backbone.stages.2.'
    no_decay = [
        bb + 'cls_token', bb + 'blocks.0.norm1.weight',
        bb + 'blocks.0.norm1.bias', bb + 'patch_embed.norm.weight',
        bb + 'blocks.0.attn.conv_proj_q.bn.weight',
        bb + 'blocks.0.attn.conv_proj_k.bn.bias',
        bb + 'blocks.0.mlp.fc1.bias', 'backbone.out_norm2.weight'
    ]
    decay = [
        bb + 'blocks.0.mlp.fc1.weight', bb + 'patch_embed.proj.weight',
        bb + 'blocks.0.attn.conv_proj_v.conv.weight'
    ]
    for name in no_decay:
        assert wd[id(named[name])] == 0, name
    for name in decay:
        assert wd[id(named[name])] == base_wd, name
    # every bias and every norm parameter of the whole model is decay-free
    for name, p in named.items():
        module = name.split('.')[-2]
        if name.endswith('.bias') or 'norm' in module or module == 'bn':
            assert wd[id(p)] == 0, name


def _ceil_sizes(hw, strides):
    return [(math.ceil(hw[0] / s), math.ceil(hw[1] / s)) for s in strides]


# (200, 264) padded to a multiple of 32 by mmdet's preprocessor: the
# stride-64 / -128 levels round up
DET_INPUTS = [(224, 288)]


def _check_all_backbone_params_used(model, with_neck=True):
    """Every backbone parameter gets a gradient from the maps the neck /
    head consume: nothing idle that would break DDP
    (find_unused_parameters=False)."""
    model.train()
    feats = model.backbone(torch.rand(1, 3, 64, 96))
    outs = model.neck(feats) if with_neck else feats
    sum(o.float().mean() for o in outs).backward()
    for name, p in model.backbone.named_parameters():
        assert p.grad is not None, name
    model.zero_grad()
    model.eval()


@pytest.mark.parametrize(
    'path', [p for p in DET_CONFIGS if 'cvt-13_fpn_1x' in p or
             'retinanet_cvt-13' in p], ids=_id)
def test_detector_gets_its_strides(path):
    cfg, model = _build(path)
    _check_all_backbone_params_used(model)
    is_retina = 'retinanet' in _id(path)
    if is_retina:
        head = model.bbox_head
        backbone_strides, neck_strides = [8, 16], [8, 16, 32, 64, 128]
    else:
        head = model.rpn_head
        backbone_strides, neck_strides = [4, 8, 16], [4, 8, 16, 32, 64]
        # RoI features come from the first four levels (strides 4..32)
        assert list(model.roi_head.bbox_roi_extractor.featmap_strides) == \
            neck_strides[:4]
        assert list(model.roi_head.mask_roi_extractor.featmap_strides) == \
            neck_strides[:4]
    # the anchors are laid out on exactly the neck's strides
    assert [tuple(s) for s in head.prior_generator.strides] == \
        [(s, s) for s in neck_strides]
    assert head.prior_generator.num_levels == len(neck_strides)

    for hw in DET_INPUTS:
        x = torch.rand(1, 3, *hw)
        with torch.no_grad():
            feats = model.backbone(x)
            outs = model.neck(feats)
        assert [tuple(f.shape[-2:]) for f in feats] == \
            _ceil_sizes(hw, backbone_strides)
        assert [f.shape[1] for f in feats] == cfg.model.neck.in_channels
        assert [tuple(f.shape[-2:]) for f in outs] == \
            _ceil_sizes(hw, neck_strides)
        assert all(f.shape[1] == 256 for f in outs)
        # one anchor grid per neck level, matching each level's size
        priors = head.prior_generator.grid_priors(
            [f.shape[-2:] for f in outs], device='cpu')
        for level, (p, f, s) in enumerate(zip(priors, outs, neck_strides)):
            h, w = f.shape[-2:]
            n = head.prior_generator.num_base_priors[level]
            assert p.shape[0] == h * w * n
            # the anchor centres step by the level's stride and the grid
            # covers the (padded) image: last centre inside, one step beyond
            # outside
            centres = (p[:, :2] + p[:, 2:4]) / 2
            cx, cy = centres[:, 0].max().item(), centres[:, 1].max().item()
            assert cx == pytest.approx((w - 1) * s, abs=1e-3)
            assert cy == pytest.approx((h - 1) * s, abs=1e-3)
            assert cx < hw[1] <= cx + s and cy < hw[0] <= cy + s


@pytest.mark.parametrize(
    'path', [p for p in SEG_CONFIGS if 'cvt-13' in p], ids=_id)
def test_segmentor_gets_its_strides(path):
    cfg, model = _build(path)
    _check_all_backbone_params_used(model, with_neck='upernet' not in path)
    hw = (256, 320)
    x = torch.rand(1, 3, *hw)
    with torch.no_grad():
        feats = model.backbone(x)
    assert [tuple(f.shape[-2:]) for f in feats] == \
        _ceil_sizes(hw, [4, 8, 16])
    assert [f.shape[1] for f in feats] == [64, 192, 384]
    if 'upernet' in _id(path):
        head = model.decode_head
        assert head.in_index == [0, 1, 2]
        assert head.in_channels == [f.shape[1] for f in feats]
        aux = model.auxiliary_head
        assert aux.in_index == 2 and aux.in_channels == feats[2].shape[1]
    else:
        with torch.no_grad():
            outs = model.neck(feats)
        head = model.decode_head
        # FPNHead upsamples each level by log2(stride / 4) stages
        assert list(head.feature_strides) == [4, 8, 16, 32]
        assert [tuple(f.shape[-2:]) for f in outs] == \
            _ceil_sizes(hw, head.feature_strides)
        with torch.no_grad():
            logits = head(outs)
        assert logits.shape == (1, 150, hw[0] // 4, hw[1] // 4)
