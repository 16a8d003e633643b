"""A real mmdet Mask R-CNN with the CvT backbone trains and predicts on CPU.

The job is ``configs/cvt_det/mask-rcnn_cvt-13_fpn_1x_coco.py`` itself (its
model types, COCO data set class, pipelines, AdamW + no-decay rules, 1x
schedule and COCO metric), shrunk to a tiny CvT arch and narrow neck / heads,
on three 200x264 / 264x200 images written in the COCO instance json format
(polygons + boxes). mmengine's Runner trains an epoch and validates.
"""
import os.path as osp

import pytest

import mmcvt  # noqa: F401
from .tiny_dense import (
    DET_DIR,
    IMAGE_SIZES,
    backward_one_batch,
    check_trained,
    evaluate_ground_truth_det,
    predict_val_batch,
    tiny_mask_rcnn_cfg,
    train_recorded,
    write_coco,
)

CONFIG = osp.join(DET_DIR, 'mask-rcnn_cvt-13_fpn_1x_coco.py')


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('mask_rcnn')
    data_root = str(tmp / 'coco')
    write_coco(data_root)
    cfg = tiny_mask_rcnn_cfg(CONFIG, data_root, str(tmp / 'work'))
    runner, record = train_recorded(cfg)
    return runner, record, data_root


def test_runner_trains_and_validates(trained):
    runner, record, _ = trained
    # 3 images, batch 2 -> 2 iterations, then COCO bbox + segm evaluation
    check_trained(runner, record, 'epoch_1.pth', weight_decay=0.05)
    for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
        assert key in record.metrics
        # an untrained detector scores little, but a real mAP
        assert 0 <= record.metrics[key] <= 1


def test_evaluation_scores_ground_truth_perfectly(trained):
    """The config's evaluation (data set classes, annotation file, COCO bbox
    and segm metric) gives 1.0 to the ground truth itself: the metric of the
    trained model is measured on the right annotations."""
    runner, _, data_root = trained
    metrics = evaluate_ground_truth_det(runner, data_root)
    assert metrics['coco/bbox_mAP'] == pytest.approx(1.0)
    assert metrics['coco/segm_mAP'] == pytest.approx(1.0)


def test_backward_reaches_backbone(trained):
    # every backbone parameter gets a finite gradient; the stem, the class
    # token (attended to by every stage-3 patch token), a conv projection and
    # an output norm all get a real (non-zero) one
    data, losses = backward_one_batch(
        trained[0],
        nonzero_grads=('stages.0.patch_embed.proj.weight',
                       'stages.2.cls_token',
                       'stages.1.blocks.0.attn.conv_proj_k.conv.weight',
                       'out_norm0.weight'))
    # padded to a multiple of 32 by the preprocessor, not resized
    assert all(s % 32 == 0 for s in data['inputs'].shape[-2:])
    assert {'loss_rpn_cls', 'loss_bbox', 'loss_mask'} <= set(losses)


def test_inference_on_non_square_sizes(trained):
    _, results = predict_val_batch(trained[0])
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
