"""ImageNet (classification) weights reach the detector's / segmentor's
backbone through the configs' own ``init_cfg=dict(type='Pretrained', ...)``
(pointed at a local file), and frozen stages stay frozen while training.

The checkpoint is written in the layout a classification run saves (and
``tools/model_converters/cvt_to_mmcvt.py`` produces): ``state_dict`` with
``backbone.stages...`` keys plus the classifier's ``head.*``, from a seeded
tiny CvT with non-trivial BatchNorm statistics.
"""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

import mmcvt  # noqa: F401
from .tiny_dense import (
    DET_DIR,
    SEG_DIR,
    TINY_ARCH,
    tiny_mask_rcnn_cfg,
    tiny_upernet_cfg,
    write_cls_checkpoint,
    write_coco,
)

MASK_RCNN = osp.join(DET_DIR, 'mask-rcnn_cvt-13_fpn_1x_coco.py')
UPERNET = osp.join(SEG_DIR,
                   'cvt-13-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py')


def _build(cfg):
    init_default_scope(cfg.default_scope)
    if cfg.default_scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    return MODELS.build(cfg.model)


def _pretrained_cfg(config, tmp_path, ckpt, **backbone):
    if 'mask-rcnn' in config:
        cfg = tiny_mask_rcnn_cfg(config, str(tmp_path / 'coco'),
                                 str(tmp_path / 'work'))
    else:
        cfg = tiny_upernet_cfg(config, str(tmp_path / 'ade'),
                               str(tmp_path / 'work'))
    # exactly the configs' init_cfg, pointed at the test checkpoint
    init_cfg = Config.fromfile(config).model.backbone.init_cfg
    cfg.model.backbone.init_cfg = dict(init_cfg, checkpoint=ckpt)
    cfg.model.backbone.update(backbone)
    return cfg


@pytest.mark.parametrize('config', [MASK_RCNN, UPERNET],
                         ids=['mask-rcnn', 'upernet'])
def test_cls_checkpoint_loads_into_backbone(config, tmp_path):
    ckpt = str(tmp_path / 'cvt_cls.pth')
    weights = write_cls_checkpoint(ckpt, seed=0)
    cfg = _pretrained_cfg(config, tmp_path, ckpt)
    model = _build(cfg)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    # a freshly built model differs from the checkpoint
    assert not torch.equal(before['stages.1.patch_embed.proj.weight'],
                           weights['stages.1.patch_embed.proj.weight'])
    model.init_weights()
    loaded = model.backbone.state_dict()
    # every backbone tensor of the checkpoint is loaded, buffers included;
    # the final classification norm ('norm.*': unused by featmap outputs)
    # and the head are not part of a dense-prediction backbone
    unused = {k for k in weights if k not in loaded}
    assert unused == {'norm.weight', 'norm.bias'}
    for k, v in weights.items():
        if k in loaded:
            assert torch.equal(loaded[k], v), k
    assert 'stages.2.cls_token' in weights
    # only the new output norms keep their initialisation (identity LN)
    new = {k for k in loaded if k not in weights}
    assert new == {f'out_norm{i}.{p}' for i in range(3)
                   for p in ('weight', 'bias')}
    assert torch.equal(loaded['out_norm0.weight'], torch.ones(16))


def test_without_class_token_the_features_change(tmp_path):
    """``cls_token=(False, False, False)``: the checkpoint's class token is an
    unexpected key, everything else loads, and the stage-3 map differs from
    the one computed with the pretrained class token in the attention."""
    ckpt = str(tmp_path / 'cvt_cls.pth')
    write_cls_checkpoint(ckpt, seed=0)
    outs = []
    for cls_token in ((False, False, True), (False, False, False)):
        cfg = _pretrained_cfg(MASK_RCNN, tmp_path, ckpt, cls_token=cls_token)
        model = _build(cfg)
        model.init_weights()
        model.eval()
        assert (model.backbone.stages[2].cls_token is None) == \
            (not cls_token[2])
        torch.manual_seed(0)
        with torch.no_grad():
            outs.append(model.backbone(torch.rand(1, 3, 96, 128)))
    with_cls, without = outs
    # stages 1-2 have no class token: identical; stage 3 attends to it
    assert torch.equal(with_cls[0], without[0])
    assert torch.equal(with_cls[1], without[1])
    assert with_cls[2].shape == without[2].shape == (1, 64, 6, 8)
    assert not torch.allclose(with_cls[2], without[2], atol=1e-4)


def test_frozen_stages_stay_frozen_through_training(tmp_path):
    """frozen_stages=1 with the Mask R-CNN config (norm_eval=True): after a
    real Runner training epoch the first stage still holds the checkpoint's
    tensors, has requires_grad False and stays in eval mode, while the other
    stages train; no BatchNorm statistics move (norm_eval)."""
    ckpt = str(tmp_path / 'cvt_cls.pth')
    weights = write_cls_checkpoint(ckpt, seed=0)
    write_coco(str(tmp_path / 'coco'))
    cfg = _pretrained_cfg(MASK_RCNN, tmp_path, ckpt, frozen_stages=1)
    cfg.train_cfg.val_interval = 10  # train only
    cfg.param_scheduler = None  # no warm-up: visible updates
    runner = Runner.from_cfg(cfg)
    runner.train()  # initialises from the checkpoint, then 2 iterations
    model = runner.model
    backbone = model.backbone
    state = backbone.state_dict()

    model.train()
    assert backbone.training
    for name, m in backbone.stages[0].named_modules():
        assert not m.training, f'stages.0.{name}'
    for name, p in backbone.stages[0].named_parameters():
        assert not p.requires_grad, f'stages.0.{name}'
    assert all(p.requires_grad for p in backbone.stages[1].parameters())
    assert backbone.stages[1].blocks[0].mlp.training
    # norm_eval: the conv projections' BatchNorms are in eval everywhere
    bns = [m for m in backbone.modules()
           if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert bns and not any(m.training for m in bns)

    changed = []
    for k, v in weights.items():
        if k not in state:
            continue
        if k.startswith('stages.0.') or 'running_' in k or \
                'num_batches_tracked' in k:
            assert torch.equal(state[k], v), k
        elif not torch.equal(state[k], v):
            changed.append(k)
    # the unfrozen stages did train
    assert 'stages.1.patch_embed.proj.weight' in changed
    assert 'stages.2.blocks.0.attn.proj_q.weight' in changed
    # frozen parameters are not even in the optimizer
    in_optim = {
        id(p)
        for g in runner.optim_wrapper.optimizer.param_groups
        for p in g['params']
    }
    assert not any(id(p) in in_optim for p in backbone.stages[0].parameters())
    assert TINY_ARCH['depths'][0] == len(backbone.stages[0].blocks)
