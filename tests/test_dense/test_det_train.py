"""A real mmdet Mask R-CNN with the CvT backbone trains and predicts on CPU.

The job is ``configs/cvt_det/mask-rcnn_cvt-13_fpn_1x_coco.py`` itself (its
model types, COCO data set class, pipelines, AdamW + no-decay rules, 1x
schedule and COCO metric), shrunk to a tiny CvT arch and narrow neck / heads,
on three 200x264 / 264x200 images written in the COCO instance json format
(polygons + boxes). mmengine's Runner trains an epoch and validates.
"""
import math
import os.path as osp

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

import mmcvt  # noqa: F401

from .tiny_dense import DET_DIR, IMAGE_SIZES, tiny_mask_rcnn_cfg, write_coco

CONFIG = osp.join(DET_DIR, 'mask-rcnn_cvt-13_fpn_1x_coco.py')


class _Record(Hook):
    """Keeps every training loss and the validation metrics."""

    def __init__(self):
        self.losses, self.metrics = [], None

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.losses.append(float(torch.as_tensor(outputs['loss']).detach()))

    def after_val_epoch(self, runner, metrics=None):
        self.metrics = metrics


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('mask_rcnn')
    data_root = str(tmp / 'coco')
    write_coco(data_root)
    cfg = tiny_mask_rcnn_cfg(CONFIG, data_root, str(tmp / 'work'))
    runner = Runner.from_cfg(cfg)
    record = _Record()
    runner.register_hook(record)
    runner.train()
    return runner, record, tmp


def test_runner_trains_and_validates(trained):
    runner, record, tmp = trained
    # 3 images, batch 2 -> 2 iterations, then COCO bbox + segm evaluation
    assert len(record.losses) == 2
    assert all(math.isfinite(v) for v in record.losses)
    assert record.metrics is not None
    for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
        assert key in record.metrics
        assert math.isfinite(record.metrics[key])
    assert osp.isfile(osp.join(runner.work_dir, 'epoch_1.pth'))
    # the config's optimizer: AdamW with the no-decay groups
    optimizer = runner.optim_wrapper.optimizer
    assert type(optimizer).__name__ == 'AdamW'
    assert {g['weight_decay'] for g in optimizer.param_groups} == {0., 0.05}


def test_backward_reaches_backbone(trained):
    runner = trained[0]
    model = runner.model
    model.train()
    model.zero_grad()
    batch = next(iter(runner.train_dataloader))
    data = model.data_preprocessor(batch, True)
    # padded to a multiple of 32 by the preprocessor, not resized
    assert all(s % 32 == 0 for s in data['inputs'].shape[-2:])
    losses = model(**data, mode='loss')
    assert {'loss_rpn_cls', 'loss_bbox', 'loss_mask'} <= set(losses)
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    loss.backward()
    backbone = model.backbone
    for name, p in backbone.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    # the stem, the class token (attended to by every stage-3 patch token),
    # a conv projection and an output norm all get a real gradient
    for name in ('stages.0.patch_embed.proj.weight', 'stages.2.cls_token',
                 'stages.1.blocks.0.attn.conv_proj_k.conv.weight',
                 'out_norm0.weight'):
        grad = dict(backbone.named_parameters())[name].grad
        assert grad.abs().sum() > 0, name
    model.zero_grad()


def test_inference_on_non_square_sizes(trained):
    runner = trained[0]
    model = runner.model
    model.eval()
    batch = next(iter(runner.val_dataloader))
    with torch.no_grad():
        results = model.test_step(batch)
    assert len(results) == 2
    for res, (h, w) in zip(results, IMAGE_SIZES):
        assert tuple(res.ori_shape) == (h, w)
        pred = res.pred_instances
        n = len(pred)
        assert pred.bboxes.shape == (n, 4) and pred.scores.shape == (n, )
        assert pred.labels.shape == (n, )
        # masks at the original, non-square, non-multiple-of-32 size
        assert tuple(pred.masks.shape) == (n, h, w)
        if n:
            assert (pred.bboxes[:, 2] <= w + 1e-3).all()
            assert (pred.bboxes[:, 3] <= h + 1e-3).all()
