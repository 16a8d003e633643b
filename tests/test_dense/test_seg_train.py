"""A real mmseg UperNet with the CvT backbone trains and predicts on CPU.

The job is ``configs/cvt_seg/cvt-13-in1k-pre_upernet_8xb2-160k_ade20k-512x512
.py`` itself (its model types, ADE20K data set class, pipelines, AdamW +
no-decay rules, schedule and IoU metric), shrunk to a tiny CvT arch and
narrow heads, on 200x264 / 264x200 images written in the ADE20K folder
layout. Training crops are 120x168; inference runs on the whole
non-square images, whose sizes are not multiples of 32. mmengine's Runner
trains two iterations and validates.
"""
import os.path as osp

import pytest
import torch

import mmcvt  # noqa: F401
from .tiny_dense import (
    IMAGE_SIZES,
    SEG_DIR,
    backward_one_batch,
    check_trained,
    evaluate_ground_truth_seg,
    predict_val_batch,
    tiny_upernet_cfg,
    train_recorded,
    write_ade20k,
)

CONFIG = osp.join(SEG_DIR,
                  'cvt-13-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py')
CROP = (120, 168)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('upernet')
    data_root = str(tmp / 'ade')
    write_ade20k(data_root)
    cfg = tiny_upernet_cfg(CONFIG, data_root, str(tmp / 'work'), CROP)
    return train_recorded(cfg)


def test_runner_trains_and_validates(trained):
    runner, record = trained
    check_trained(runner, record, 'iter_2.pth', weight_decay=0.01)
    assert 'mIoU' in record.metrics
    assert 0 <= record.metrics['mIoU'] <= 100


def test_evaluation_scores_ground_truth_perfectly(trained):
    """The config's IoU evaluation gives 100 to the ground truth itself and
    less to a wrong labelling: the metric of the trained model is measured on
    the right label maps (ADE20K's reduce_zero_label included)."""
    runner = trained[0]
    assert evaluate_ground_truth_seg(runner)['mIoU'] == pytest.approx(100)
    assert evaluate_ground_truth_seg(runner, shift=1)['mIoU'] < 50


def test_backward_reaches_backbone(trained):
    data, losses = backward_one_batch(
        trained[0],
        nonzero_grads=('stages.0.patch_embed.proj.weight',
                       'stages.2.cls_token',
                       'stages.0.blocks.0.attn.conv_proj_q.bn.weight',
                       'out_norm1.weight'))
    assert tuple(data['inputs'].shape[-2:]) == CROP
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(losses)


def test_inference_on_non_square_sizes(trained):
    runner = trained[0]
    model = runner.model
    batch, results = predict_val_batch(runner)
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
