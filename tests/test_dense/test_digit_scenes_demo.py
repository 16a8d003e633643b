"""The dense demos learn: the detection and segmentation configs of
``bash tools/demo.sh`` (configs/demo/*_digit-scenes.py), on a small fixed
set of digit scenes written by tools/dataset_converters/
prepare_digit_scenes.py, trained with mmengine's Runner.

- The classifier checkpoint's backbone tensors land unchanged in the
  detector and the segmenter (``init_cfg``, as the demo loads them).
- Training lowers the loss and lifts bbox mAP / mIoU, measured on the
  training scenes (what a few dozen iterations can show), above floors set
  from measured runs with a margin.
- The trained models predict at the three test scales of the demo, one of
  them non-square and not a multiple of 32, at each image's original size.

Only paths, loader sizes and the schedule's length are changed.
"""
import json
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from test_tools.tool_module import load_tool  # tests/ is on sys.path

import mmcvt  # noqa: F401
from .tiny_dense import RecordHook, randomize_bn_statistics

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(ROOT, 'configs', 'demo')
CLS = osp.join(DEMO, 'cvt-tiny_digits.py')
DET = osp.join(DEMO, 'mask-rcnn_cvt-tiny_fpn_digit-scenes.py')
SEG = osp.join(DEMO, 'upernet_cvt-tiny_digit-scenes.py')
# the stronger heads, shrunk the same way (README.md; not in tools/demo.sh)
CASCADE = osp.join(DEMO, 'cascade-mask-rcnn_cvt-tiny_fpn_digit-scenes.py')
DINO = osp.join(DEMO, 'dino-4scale_cvt-tiny_digit-scenes.py')
M2F = osp.join(DEMO, 'mask2former_cvt-tiny_digit-scenes.py')
# their level options (README.md)
DINO_8_64 = osp.join(DEMO, 'dino-4scale_cvt-tiny_digit-scenes_strides-8-64.py')
M2F_3_LEVELS = osp.join(DEMO, 'mask2former_cvt-tiny_digit-scenes_3-levels.py')
# the demo's test scales (tools/demo.sh)
SCALES = [(168, 120), (224, 160), (336, 240)]
NUM_SCENES = 16

# Measured on these 16 scenes (seed 0, this 2-core machine), validated on
# the same scenes: Mask R-CNN, 80 iterations: loss 3.08 -> 1.25 (first and
# last 10), bbox mAP 0.435, segm mAP 0.402; UperNet, 120 iterations: loss
# 4.07 -> 1.25, mIoU 25.7 (aAcc 94.3; "all background" scores mIoU ~8.5 on
# 11 classes). The floors leave a margin.
DET_ITERS, DET_MIN_BBOX_MAP, DET_MIN_SEGM_MAP = 80, 0.3, 0.25
SEG_ITERS, SEG_MIN_MIOU = 120, 11.0

pytestmark = pytest.mark.usefixtures('one_torch_thread')


@pytest.fixture(scope='module')
def scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp('scenes') / 'digit_scenes'
    tool = load_tool('dataset_converters', 'prepare_digit_scenes.py')
    tool.main(['--out', str(out), '--num-train', str(NUM_SCENES),
               '--num-val', '4'])
    return str(out)


@pytest.fixture(scope='module')
def classifier(tmp_path_factory):
    """A classification checkpoint of the demo config (random weights with
    non-trivial BatchNorm statistics): ``(path, backbone state dict)``."""
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        torch.manual_seed(0)
        model = MODELS.build(Config.fromfile(CLS).model)
        model.init_weights()
    randomize_bn_statistics(model)
    path = str(tmp_path_factory.mktemp('cls') / 'epoch_20.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    backbone = {
        k[len('backbone.'):]: v.clone()
        for k, v in model.state_dict().items() if k.startswith('backbone.')
    }
    return path, backbone


def _on_training_scenes(cfg: Config, data_root: str, work_dir: str,
                        checkpoint) -> Config:
    """The demo config on ``data_root``'s training scenes, validated on the
    same scenes, loading the backbone from ``checkpoint``."""
    cfg.work_dir = work_dir
    cfg.model.backbone.init_cfg = None if checkpoint is None else dict(
        type='Pretrained', checkpoint=checkpoint)
    # a visualizer (and scalar log) of its own, as each tools/train.py run
    # has: mmengine keeps one instance a name in the process
    cfg.visualizer.name = f'visualizer_{osp.basename(work_dir)}'
    # the toolkit's logger (mmseg's logs metrics by iteration), more often
    cfg.default_hooks.logger.interval = 10
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=-1)
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[name]
        loader.num_workers = 0
        loader.persistent_workers = False
        loader.dataset.data_root = data_root
    return cfg


def _det_cfg(data_root, work_dir, checkpoint, iters=DET_ITERS,
             config=DET) -> Config:
    cfg = _on_training_scenes(
        Config.fromfile(config), data_root, work_dir, checkpoint)
    for name in ('val_dataloader', 'test_dataloader'):
        cfg[name].dataset.ann_file = 'annotations/instances_train.json'
        cfg[name].dataset.data_prefix = dict(img='images/train/')
    for name in ('val_evaluator', 'test_evaluator'):
        cfg[name].ann_file = osp.join(data_root, 'annotations',
                                      'instances_train.json')
    # iters as epochs of NUM_SCENES / 4 batches; the step decay at the end
    epochs = iters * cfg.train_dataloader.batch_size // NUM_SCENES
    cfg.train_cfg.max_epochs = epochs
    cfg.train_cfg.val_interval = epochs
    cfg.param_scheduler[0].end = 10
    cfg.param_scheduler[1].update(end=epochs, milestones=[epochs - 1])
    return cfg


def _seg_cfg(data_root, work_dir, checkpoint, iters=SEG_ITERS,
             config=SEG) -> Config:
    cfg = _on_training_scenes(
        Config.fromfile(config), data_root, work_dir, checkpoint)
    for name in ('val_dataloader', 'test_dataloader'):
        cfg[name].dataset.data_prefix = dict(
            img_path='images/train', seg_map_path='seg_maps/train')
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters
    cfg.param_scheduler[0].end = 10
    cfg.param_scheduler[1].update(begin=10, end=iters)
    return cfg


def _train(cfg: Config):
    runner = Runner.from_cfg(cfg)
    record = RecordHook()
    runner.register_hook(record)
    runner.train()
    return runner, record


@pytest.fixture(scope='module')
def detector(scenes, classifier, tmp_path_factory):
    cfg = _det_cfg(scenes, str(tmp_path_factory.mktemp('det')),
                   classifier[0])
    return _train(cfg)


@pytest.fixture(scope='module')
def segmenter(scenes, classifier, tmp_path_factory):
    cfg = _seg_cfg(scenes, str(tmp_path_factory.mktemp('seg')),
                   classifier[0])
    return _train(cfg)


@pytest.mark.parametrize(
    'config', [DET, SEG, CASCADE, DINO, DINO_8_64, M2F, M2F_3_LEVELS],
    ids=['det', 'seg', 'cascade', 'dino', 'dino-strides-8-64', 'mask2former',
         'mask2former-3-levels'])
def test_classifier_backbone_lands_unchanged(config, scenes, classifier,
                                             tmp_path):
    """Every backbone tensor of the classification checkpoint is loaded,
    bit for bit, by the dense config's ``init_cfg``, except the final norm
    of the class token, not built for feature maps; only the output norms
    that classification does not have are new."""
    path, backbone = classifier
    make = _seg_cfg if config in (SEG, M2F, M2F_3_LEVELS) else _det_cfg
    runner = Runner.from_cfg(make(scenes, str(tmp_path), path,
                                  config=config))
    model = runner.model
    model.init_weights()
    loaded = model.backbone.state_dict()
    for key, value in backbone.items():
        if key.startswith('norm.'):
            assert key not in loaded
        else:
            assert torch.equal(loaded[key], value), key
    new = sorted(k for k in loaded if k not in backbone)
    assert new and all(k.startswith('out_norm') for k in new), new


def _losses_fall(losses, n=10):
    first, last = np.mean(losses[:n]), np.mean(losses[-n:])
    assert last < 0.7 * first, f'loss {first:.3f} -> {last:.3f}'


def test_detector_learns(detector):
    runner, record = detector
    assert len(record.losses) == DET_ITERS
    _losses_fall(record.losses)
    bbox_map = record.metrics['coco/bbox_mAP']
    assert bbox_map > DET_MIN_BBOX_MAP, record.metrics
    assert record.metrics['coco/segm_mAP'] > DET_MIN_SEGM_MAP, record.metrics


def test_segmenter_learns(segmenter):
    runner, record = segmenter
    assert len(record.losses) == SEG_ITERS
    _losses_fall(record.losses)
    assert record.metrics['mIoU'] > SEG_MIN_MIOU, record.metrics


def test_training_curves_of_a_demo_run(segmenter, tmp_path):
    """The curves that tools/demo.sh draws come from the scalar log that
    mmengine writes during the demo config's training."""
    from mmcvt.utils.curves import plot_curves, read_curves
    runner, record = segmenter
    curves = read_curves(runner.work_dir, 'pretrained')
    # every 10 iterations, and where the loader's first pass ends
    first_pass = NUM_SCENES // runner.cfg.train_dataloader.batch_size
    assert curves.loss_x == [first_pass, *range(10, SEG_ITERS + 1, 10)]
    # each the mean over the last (up to) 10 iterations
    assert curves.loss == pytest.approx(
        [np.mean(record.losses[max(0, i - 10):i]) for i in curves.loss_x],
        rel=1e-4)
    assert curves.val_x == [SEG_ITERS]
    assert curves.val['mIoU'] == [pytest.approx(record.metrics['mIoU'])]
    out = str(tmp_path / 'curves.png')
    assert plot_curves([curves], out) == 'mIoU' and osp.getsize(out) > 0


def _predict_at(runner, scale, n=2):
    """The first ``n`` training scenes through the test pipeline resized to
    ``scale`` and the trained model: ``[(input sample, result)]``."""
    cfg = runner.cfg.copy()
    loader = cfg.test_dataloader
    loader.batch_size = 1  # mmseg tests images of one size a batch
    next(t for t in loader.dataset.pipeline
         if t['type'] == 'Resize')['scale'] = scale
    model = runner.model
    model.eval()
    out = []
    with torch.no_grad():
        for batch, _ in zip(Runner.build_dataloader(loader), range(n)):
            out.append((batch['data_samples'][0], model.test_step(batch)[0]))
    return out


@pytest.mark.parametrize('scale', SCALES, ids=lambda s: f'{s[0]}x{s[1]}')
@pytest.mark.parametrize('job', ['det', 'seg'])
def test_predicts_at_original_size(job, detector, segmenter, scale):
    runner, _ = detector if job == 'det' else segmenter
    for sample, result in _predict_at(runner, scale):
        h, w = sample.ori_shape
        if scale != (224, 160):  # the model saw another size
            assert result.img_shape != (h, w)
        if job == 'seg':
            assert result.pred_sem_seg.data.shape == (1, h, w)
            continue
        pred = result.pred_instances
        assert len(pred) > 0
        assert pred.masks.shape[1:] == (h, w)
        boxes = pred.bboxes
        assert (boxes[:, 0::2] <= w + 1e-3).all()
        assert (boxes[:, 1::2] <= h + 1e-3).all()


@pytest.mark.parametrize('job', ['det', 'seg'])
def test_test_tool_draws_and_scores_at_another_scale(job, detector, segmenter,
                                                     tmp_path):
    """The demo's test call: ``tools/test.py`` on the trained model at the
    0.75x scale with ``--show-dir``: the toolkit's visualizer draws every
    image and the metrics land in ``metrics.json``, where
    ``tools/analysis/demo_summary.py`` reads them."""
    runner, record = detector if job == 'det' else segmenter
    config, ckpt = str(tmp_path / 'job.py'), str(tmp_path / 'model.pth')
    runner.cfg.dump(config)
    runner.save_checkpoint(str(tmp_path), 'model.pth')
    work, show = tmp_path / 'test_168x120', tmp_path / 'pictures'
    subprocess.run([
        sys.executable, osp.join(ROOT, 'tools', 'test.py'), config, ckpt,
        '--work-dir', str(work), '--show-dir', str(show), '--cfg-options',
        'test_dataloader.dataset.pipeline.1.scale=(168,120)'
    ], cwd=ROOT, check=True, capture_output=True)
    with open(work / 'metrics.json') as f:
        metrics = json.load(f)
    key = 'coco/bbox_mAP' if job == 'det' else 'mIoU'
    assert 0 < metrics[key] and set(metrics) == set(record.metrics)
    pictures = list(show.rglob('*.png'))
    assert len(pictures) == NUM_SCENES


def test_demo_summary_reads_the_metrics(tmp_path):
    tool = load_tool('analysis', 'demo_summary.py')
    for folder, metrics in (
            ('cvt-tiny_digits/test', {'accuracy/top1': 98.3}),
            ('mask-rcnn_cvt-tiny_fpn_digit-scenes/test_336x240',
             {'coco/bbox_mAP': 0.5, 'coco/segm_mAP': 0.4}),
            ('mask-rcnn_cvt-tiny_fpn_digit-scenes/test_168x120',
             {'coco/bbox_mAP': 0.45, 'coco/segm_mAP': 0.35}),
            ('upernet_cvt-tiny_digit-scenes/test_224x160', {'mIoU': 30.0})):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / 'metrics.json').write_text(json.dumps(metrics))
    rows = tool.summary(str(tmp_path))
    assert rows == [
        ('cls', '-', 'accuracy/top1', 98.3),
        ('det', '168x120', 'coco/bbox_mAP', 0.45),
        ('det', '168x120', 'coco/segm_mAP', 0.35),
        ('det', '336x240', 'coco/bbox_mAP', 0.5),
        ('det', '336x240', 'coco/segm_mAP', 0.4),
        ('seg', '224x160', 'mIoU', 30.0),
    ]
    assert tool.summary(str(tmp_path), 'seg') == rows[-1:]
    assert tool.main(['--work-dirs', str(tmp_path / 'none')]) == 1
    curves = tmp_path / 'upernet_cvt-tiny_digit-scenes' / 'curves.png'
    curves.write_bytes(b'png')
    assert tool.pictures(str(tmp_path)) == [str(curves)]
    assert tool.pictures(str(tmp_path), 'det') == []


def test_show_dir_needs_a_visualization_hook():
    from mmcvt.cli import enable_visualization
    cfg = Config(dict(default_hooks=dict(logger=dict(type='LoggerHook'))))
    with pytest.raises(ValueError, match='--show-dir needs a visualization'):
        enable_visualization(cfg, 'pictures')
    cfg = Config.fromfile(SEG)
    enable_visualization(cfg, '/tmp/pictures')
    assert cfg.default_hooks.visualization.draw
    assert cfg.visualizer.save_dir == '/tmp/pictures'
    cfg.work_dir = 'work_dirs/seg'
    enable_visualization(cfg, 'pictures')  # relative: inside the work dir
    assert cfg.visualizer.save_dir == osp.join('work_dirs/seg', 'pictures')


@pytest.mark.parametrize(
    'path', sorted(p for p in __import__('glob').glob(
        osp.join(DEMO, '*_digit-scenes*.py'))
        if osp.basename(p).startswith(('upernet', 'mask2former'))),
    ids=osp.basename)
def test_inference_model_sees_the_test_scale(path):
    """mmseg's inference_model (and tools/analysis/instance_purity.py)
    builds its pipeline from ``cfg.test_pipeline``: the demo segmenters set
    it to the test dataloader's, not the recipe's 2048x512 resize."""
    cfg = Config.fromfile(path)
    assert cfg.test_pipeline == cfg.test_dataloader.dataset.pipeline
    assert cfg.test_pipeline[1]['scale'] == (224, 160)
