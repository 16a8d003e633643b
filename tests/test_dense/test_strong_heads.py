"""Cascade Mask R-CNN, DINO and Mask2Former with CvT-13, as published: each
config's own ``init_cfg`` loads the CvT-13 weights from the hub (a local hub
on 127.0.0.1 serving a seeded CvT-13 that ``transformers`` wrote, in the
layout of ``microsoft/cvt-13``), and mmengine's Runner trains the full-width
model two iterations and validates it on the CPU, at non-square sizes that
are not multiples of 32.

Only the data (the tiny COCO / ADE20K sets of tiny_dense.py and their
classes), the pipelines' scales, the batch, the schedule length and the
numbers of proposals, sampled RoIs, queries and mask points are changed; DINO's
encoder and decoder and Mask2Former's pixel decoder run mmcv's
MultiScaleDeformableAttention on the CPU (test_mmcv_ops.py checks its
sampling).
"""
import math
import os.path as osp

import pytest
import torch
from safetensors.torch import save_file
from test_tools.local_hub import LocalHub, hf_cvt_model

import mmcvt  # noqa: F401
from mmcvt.models.utils import convert_hf_to_mmcvt
from .tiny_dense import (
    DET_DIR,
    IMAGE_SIZES,
    SEG_DIR,
    backward_one_batch,
    full_size_cfg,
    predict_val_batch,
    train_recorded,
    write_ade20k,
    write_coco,
)

CONFIGS = {
    'cascade-mask-rcnn':
    osp.join(DET_DIR, 'cascade-mask-rcnn_cvt-13_fpn_ms-crop-3x_coco.py'),
    'dino':
    osp.join(DET_DIR, 'dino-4scale_cvt-13_8xb2-12e_coco.py'),
    'mask2former':
    osp.join(SEG_DIR,
             'mask2former_cvt-13_8xb2-160k_ade20k-512x512.py'),
}


@pytest.fixture(scope='module')
def hub(tmp_path_factory):
    """``microsoft/cvt-13`` on a local hub, an empty cache; yields the
    checkpoint's backbone tensors in mmcvt's layout."""
    tmp = tmp_path_factory.mktemp('hub')
    state = {
        k: v.contiguous()
        for k, v in hf_cvt_model(0, num_labels=1000).state_dict().items()
    }
    path = str(tmp / 'model.safetensors')
    save_file(state, path)
    source = {
        k[len('backbone.'):]: v
        for k, v in convert_hf_to_mmcvt(state).items()
        if k.startswith('backbone.')
    }
    with LocalHub({'microsoft/cvt-13': {'model.safetensors': path}}) as srv, \
            pytest.MonkeyPatch.context() as mp:
        mp.setenv('HF_ENDPOINT', srv.endpoint)
        mp.setenv('HF_HUB_CACHE', str(tmp / 'cache'))
        mp.delenv('HF_HUB_OFFLINE', raising=False)
        yield source


@pytest.fixture(scope='module', params=list(CONFIGS))
def trained(request, hub, tmp_path_factory):
    name = request.param
    tmp = tmp_path_factory.mktemp(name)
    data_root = str(tmp / 'data')
    if name == 'mask2former':
        write_ade20k(data_root)
    else:
        write_coco(data_root)
    cfg = full_size_cfg(CONFIGS[name], data_root, str(tmp / 'work'))
    assert cfg.model.backbone.init_cfg.checkpoint == 'hf://microsoft/cvt-13'
    torch.manual_seed(0)
    runner, record = train_recorded(cfg)
    return name, runner, record, hub


def test_published_weights_load_through_the_hub(trained):
    """The Runner's initialisation read the hub file: every backbone tensor
    but the new output norms is the checkpoint's (training moved the
    weights, so the check is on a fresh build from the same config)."""
    name, runner, _, source = trained
    from mmengine.registry import MODELS, DefaultScope
    with DefaultScope.overwrite_default_scope(runner.cfg.default_scope):
        model = MODELS.build(runner.cfg.model)
    model.init_weights()
    state = model.backbone.state_dict()
    assert set(state) - set(source) == {
        f'out_norm{i}.{p}' for i in range(3) for p in ('weight', 'bias')}
    # the classification norm is not part of a dense backbone
    assert set(source) - set(state) == {'norm.weight', 'norm.bias'}
    for k, v in source.items():
        if k in state:
            assert torch.equal(state[k], v), k
    assert model.backbone.arch_name.lower() == 'cvt-13'


def test_trains_and_validates(trained):
    name, runner, record, _ = trained
    assert len(record.losses) == 2
    assert all(math.isfinite(v) for v in record.losses)
    metrics = record.metrics
    assert metrics is not None
    if name == 'mask2former':
        assert 0 <= metrics['mIoU'] <= 100
    else:
        assert 0 <= metrics['coco/bbox_mAP'] <= 1
    if name == 'cascade-mask-rcnn':
        assert 0 <= metrics['coco/segm_mAP'] <= 1


def test_backward_reaches_every_backbone_parameter(trained):
    """All three CvT maps reach the heads (DINO's and Mask2Former's stride-4
    level included), and the class token is attended to."""
    name, runner, _, _ = trained
    _, losses = backward_one_batch(
        runner,
        nonzero_grads=('stages.0.patch_embed.proj.weight',
                       'stages.2.cls_token',
                       'stages.1.blocks.0.attn.conv_proj_k.conv.weight',
                       'out_norm0.weight', 'out_norm2.weight'))
    expected = {
        'cascade-mask-rcnn': {'s0.loss_bbox', 's2.loss_mask'},
        'dino': {'loss_cls', 'loss_iou', 'dn_loss_bbox', 'enc_loss_cls'},
        'mask2former': {'decode.loss_cls', 'decode.loss_mask',
                        'decode.d8.loss_dice'},
    }[name]
    assert expected <= set(losses)


def test_inference_on_non_square_sizes(trained):
    name, runner, _, _ = trained
    _, results = predict_val_batch(runner)
    if name == 'mask2former':
        assert len(results) == 1  # mmseg validates one image per batch
        h, w = IMAGE_SIZES[0]
        assert tuple(results[0].ori_shape) == (h, w)
        assert tuple(results[0].pred_sem_seg.data.shape) == (1, h, w)
        assert tuple(results[0].seg_logits.data.shape) == (150, h, w)
        return
    assert len(results) == 2
    for res, (h, w) in zip(results, IMAGE_SIZES):
        assert tuple(res.ori_shape) == (h, w)
        pred = res.pred_instances
        n = len(pred)
        assert n > 0 and pred.bboxes.shape == (n, 4)
        assert (pred.bboxes[:, 2] <= w + 1e-3).all()
        assert (pred.bboxes[:, 3] <= h + 1e-3).all()
        if name == 'cascade-mask-rcnn':
            assert tuple(pred.masks.shape) == (n, h, w)
        else:  # DINO: the top-k of its queries' class scores
            assert n == runner.cfg.model.test_cfg.max_per_img
