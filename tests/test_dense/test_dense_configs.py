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
from torch import nn

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
                f'cvt-{arch}-in1k-pre_fpn_8xb4-80k_ade20k-512x512.py',
                f'cascade-mask-rcnn_cvt-{arch}_fpn_ms-crop-3x_coco.py',
                f'dino-4scale_cvt-{arch}_8xb2-12e_coco.py',
                f'mask2former_cvt-{arch}_8xb2-160k_ade20k-512x512.py'):
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
    # nothing but what the toolkit recipe itself imports (mmseg's
    # Mask2Former: mmdet's models); the ConvNeXt recipe's mmpretrain import
    # is dropped with its backbone
    assert cfg.get('custom_imports', {}).get('imports', []) in (
        [], 'mmdet.models'), path
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
    # the Cascade recipe trains in mixed precision, which a CPU cannot
    # (mmcvt.compat says so): its parameter groups are built in fp32 here
    assert cfg.optim_wrapper.type == (
        'AmpOptimWrapper' if 'cascade' in _id(path) else 'OptimWrapper')
    optim_wrapper = build_optim_wrapper(
        model, dict(cfg.optim_wrapper, type='OptimWrapper'))
    optimizer = optim_wrapper.optimizer
    assert type(optimizer).__name__ == 'AdamW'
    base_wd = cfg.optim_wrapper.optimizer.weight_decay
    name = _id(path)
    # the recipes' optimizer, unchanged: lr, weight decay, 0.1x backbone lr
    recipe = {
        'cascade': (2e-4, 0.05, 1.0),
        'dino': (1e-4, 1e-4, 0.1),
        'mask2former': (1e-4, 0.05, 0.1),
    }.get(re.search(r'cascade|dino|mask2former|$', name).group(),
          (1e-4, 0.05, 1.0) if expected_scope == 'mmdet' else None)
    if recipe is not None:
        assert (cfg.optim_wrapper.optimizer.lr, base_wd) == recipe[:2]
    base_lr = cfg.optim_wrapper.optimizer.lr
    wd = {
        id(p): g['weight_decay']
        for g in optimizer.param_groups for p in g['params']
    }
    lr = {id(p): g['lr'] for g in optimizer.param_groups for p in g['params']}
    named = dict(model.named_parameters())
    assert len(wd) == len(named)
    if recipe is not None and recipe[2] != 1.0:
        _check_backbone_lr_keys(named, wd, lr, base_lr, base_wd)
        return
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


def _check_backbone_lr_keys(named, wd, lr, base_lr, base_wd):
    """DINO / Mask2Former (``cvt_backbone_lr01_keys``): every backbone
    parameter at 0.1x lr, its norms, BatchNorms and class token without
    weight decay and its other weights with it; no head parameter is caught
    by the CvT keys (all at the base lr)."""
    for name, p in named.items():
        if not name.startswith('backbone.'):
            assert lr[id(p)] == base_lr, name
            continue
        assert lr[id(p)] == pytest.approx(0.1 * base_lr), name
        module = name.split('.')[-2]
        if 'norm' in module or module == 'bn' or name.endswith('cls_token'):
            assert wd[id(p)] == 0, name
        else:  # weights, and biases as in the Swin recipes
            assert wd[id(p)] == base_wd, name


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
             'retinanet_cvt-13' in p or 'cascade-mask-rcnn_cvt-13' in p],
    ids=_id)
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
        # RoI features come from the first four levels (strides 4..32), in
        # every stage of a cascade
        roi = model.roi_head
        extractors = [roi.bbox_roi_extractor, roi.mask_roi_extractor]
        extractors = [e for x in extractors
                      for e in (x if isinstance(x, nn.ModuleList) else [x])]
        assert len(extractors) == (6 if 'cascade' in _id(path) else 2)
        for extractor in extractors:
            assert list(extractor.featmap_strides) == neck_strides[:4]
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
    'path',
    [p for p in SEG_CONFIGS if 'cvt-13' in p and 'mask2former' not in p],
    ids=_id)
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


@pytest.mark.parametrize(
    'path', [p for p in ALL_CONFIGS if re.search('(dino|mask2former).*13', p)],
    ids=_id)
def test_deformable_attention_gets_its_levels(path):
    """DINO and Mask2Former: ChannelMapper turns the three CvT maps
    (strides 4, 8, 16) into four 256-channel levels, the fourth (stride 32)
    a stride-2 conv on the stride-16 map; the deformable attention samples
    exactly these levels (DINO: all four; Mask2Former's pixel decoder: the
    coarsest three, with the stride-4 map for the mask features)."""
    cfg, model = _build(path)
    _check_all_backbone_params_used(model)
    hw = (200, 264)  # mmdet's DINO pads to no multiple: pad_size_divisor=1
    with torch.no_grad():
        outs = model.neck(model.backbone(torch.rand(1, 3, *hw)))
    strides = [4, 8, 16, 32]
    assert [tuple(f.shape[-2:]) for f in outs] == _ceil_sizes(hw, strides)
    assert all(f.shape[1] == 256 for f in outs)
    extra = model.neck.extra_convs[0].conv
    assert (extra.in_channels, extra.stride, extra.kernel_size) == \
        (384, (2, 2), (3, 3))
    if 'dino' in _id(path):
        assert model.num_feature_levels == 4
        layers = [model.encoder.layers[0].self_attn,
                  model.decoder.layers[0].cross_attn]
        assert all(a.num_levels == 4 for a in layers)
        return
    head = model.decode_head
    assert list(head.pixel_decoder.strides) == strides
    assert head.pixel_decoder.num_encoder_levels == 3
    with torch.no_grad():
        mask_feature, levels = head.pixel_decoder(outs)
    assert tuple(mask_feature.shape[-2:]) == _ceil_sizes(hw, [4])[0]
    assert [tuple(f.shape[-2:]) for f in levels] == \
        _ceil_sizes(hw, [32, 16, 8])
