"""A real mmseg UperNet with the CvT backbone trains and predicts on CPU.

The job is ``configs/cvt_seg/cvt-13-in1k-pre_upernet_8xb2-160k_ade20k-512x512
.py`` itself (its model types, ADE20K data set class, pipelines, AdamW +
no-decay rules, schedule and IoU metric), shrunk to a tiny CvT arch and
narrow heads, on 200x264 / 264x200 images written in the ADE20K folder
layout. Training crops are 120x168; inference runs on the whole
non-square images, whose sizes are not multiples of 32. mmengine's Runner
trains two iterations and validates.
"""
import math
import os.path as osp

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

import mmcvt  # noqa: F401

from .tiny_dense import IMAGE_SIZES, SEG_DIR, tiny_upernet_cfg, write_ade20k

CONFIG = osp.join(SEG_DIR,
                  'cvt-13-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py')
CROP = (120, 168)


class _Record(Hook):

    def __init__(self):
        self.losses, self.metrics = [], None

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.losses.append(float(torch.as_tensor(outputs['loss']).detach()))

    def after_val_epoch(self, runner, metrics=None):
        self.metrics = metrics


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('upernet')
    data_root = str(tmp / 'ade')
    write_ade20k(data_root)
    cfg = tiny_upernet_cfg(CONFIG, data_root, str(tmp / 'work'), CROP)
    runner = Runner.from_cfg(cfg)
    record = _Record()
    runner.register_hook(record)
    runner.train()
    return runner, record


def test_runner_trains_and_validates(trained):
    runner, record = trained
    assert len(record.losses) == 2
    assert all(math.isfinite(v) for v in record.losses)
    assert record.metrics is not None and 'mIoU' in record.metrics
    assert math.isfinite(record.metrics['mIoU'])
    assert osp.isfile(osp.join(runner.work_dir, 'iter_2.pth'))
    optimizer = runner.optim_wrapper.optimizer
    assert type(optimizer).__name__ == 'AdamW'
    assert {g['weight_decay'] for g in optimizer.param_groups} == {0., 0.01}


def test_backward_reaches_backbone(trained):
    runner = trained[0]
    model = runner.model
    model.train()
    model.zero_grad()
    batch = next(iter(runner.train_dataloader))
    data = model.data_preprocessor(batch, True)
    assert tuple(data['inputs'].shape[-2:]) == CROP
    losses = model(**data, mode='loss')
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(losses)
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    loss.backward()
    backbone = model.backbone
    params = dict(backbone.named_parameters())
    for name, p in params.items():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    for name in ('stages.0.patch_embed.proj.weight', 'stages.2.cls_token',
                 'stages.0.blocks.0.attn.conv_proj_q.bn.weight',
                 'out_norm1.weight'):
        assert params[name].grad.abs().sum() > 0, name
    model.zero_grad()


def test_inference_on_non_square_sizes(trained):
    runner = trained[0]
    model = runner.model
    model.eval()
    batch = next(iter(runner.val_dataloader))
    with torch.no_grad():
        results = model.test_step(batch)
    sizes = []
    for res in results:
        sizes.append(tuple(res.ori_shape))
        h, w = res.ori_shape
        assert tuple(res.pred_sem_seg.data.shape) == (1, h, w)
        assert tuple(res.seg_logits.data.shape) == (150, h, w)
        assert res.pred_sem_seg.data.max() < 150
    assert sizes == [IMAGE_SIZES[0]]  # val batch size 1: the 200x264 image
    # whole-image inference, no padding: the backbone sees 200x264 itself
    data = model.data_preprocessor(batch, False)
    assert tuple(data['inputs'].shape[-2:]) == IMAGE_SIZES[0]
    with torch.no_grad():
        feats = model.backbone(data['inputs'])
    assert [tuple(f.shape[-2:]) for f in feats] == [(50, 66), (25, 33),
                                                     (13, 17)]
