"""Tiny dense-prediction jobs for the tests: real COCO-json / ADE20K-folder
data written to disk, and the repository's det / seg configs shrunk (a tiny
custom CvT arch, narrow necks and heads, small image sizes) so that a
Runner trains and validates them in seconds on CPU; and the steps the
det / seg training tests share (train with a recording hook, back-propagate
one batch, predict one validation batch).

Only sizes, widths and paths are changed: the model types, the data set
classes, the pipelines and the optimizer settings are the configs' own.
"""
import json
import math
import os
import os.path as osp

import numpy as np
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from PIL import Image, ImageDraw

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DET_DIR = osp.join(ROOT, 'configs', 'cvt_det')
SEG_DIR = osp.join(ROOT, 'configs', 'cvt_seg')

# a 3-stage CvT small enough for CPU tests (same layer layout as CvT-13)
TINY_ARCH = dict(
    embed_dims=[16, 32, 64],
    num_heads=[1, 2, 4],
    depths=[1, 1, 2],
    drop_path_rates=[0., 0., 0.1])
TINY_CHANNELS = TINY_ARCH['embed_dims']
NECK_CHANNELS = 32

# (height, width): small, non-square, not multiples of 32
IMAGE_SIZES = [(200, 264), (264, 200), (200, 264)]
COCO_CLASSES = ('person', 'car')


def tiny_backbone_state_dict(seed: int = 0, **kwargs) -> dict:
    """State dict of a seeded tiny CvT, as a classification run saves it."""
    from mmcvt.models.backbones.cvt import CvT
    torch.manual_seed(seed)
    cvt = CvT(arch=TINY_ARCH, **kwargs)
    cvt.init_weights()
    randomize_bn_statistics(cvt)
    return {k: v.clone() for k, v in cvt.state_dict().items()}


def randomize_bn_statistics(model: torch.nn.Module) -> None:
    """Non-trivial BatchNorm running statistics, so that loading them
    shows."""
    for name, buf in model.named_buffers():
        if name.endswith('running_mean'):
            buf.copy_(torch.randn_like(buf) * 0.1)
        elif name.endswith('running_var'):
            buf.copy_(torch.rand_like(buf) + 0.5)


def write_cls_checkpoint(path: str, seed: int = 0) -> dict:
    """A classification checkpoint in the mmpretrain layout
    (``backbone.stages...`` plus a ``head.*``), as produced by
    ``tools/model_converters/cvt_to_mmcvt.py``; returns the backbone part."""
    backbone = tiny_backbone_state_dict(seed)
    state_dict = {'backbone.' + k: v for k, v in backbone.items()}
    state_dict['head.fc.weight'] = torch.randn(10, TINY_CHANNELS[-1])
    state_dict['head.fc.bias'] = torch.zeros(10)
    torch.save({'state_dict': state_dict, 'meta': {}}, path)
    return backbone


# --------------------------------------------------------------------- data


def _image(rng, h, w):
    img = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(img)


def write_coco(root: str) -> str:
    """COCO instance json (polygons + boxes) and JPEG images under ``root``:
    ``images/*.jpg`` and ``annotations/instances.json``. Returns the json
    path."""
    rng = np.random.default_rng(0)
    os.makedirs(osp.join(root, 'images'), exist_ok=True)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    images, annotations = [], []
    ann_id = 1
    for img_id, (h, w) in enumerate(IMAGE_SIZES, start=1):
        img = _image(rng, h, w)
        draw = ImageDraw.Draw(img)
        # one box-like "car" and one triangle "person" per image
        x0, y0 = 20 + 10 * img_id, 30
        rect = [x0, y0, x0 + 90, y0, x0 + 90, y0 + 60, x0, y0 + 60]
        tx, ty = w - 100, h - 120
        tri = [tx, ty + 100, tx + 40, ty, tx + 80, ty + 100]
        for poly, cat, color in ((rect, 2, (230, 60, 60)),
                                 (tri, 1, (60, 230, 60))):
            draw.polygon(poly, fill=color)
            xs, ys = poly[0::2], poly[1::2]
            bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
            area = 0.5 * abs(
                sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i]
                    for i in range(len(xs))))
            annotations.append(
                dict(
                    id=ann_id,
                    image_id=img_id,
                    category_id=cat,
                    bbox=[float(v) for v in bbox],
                    area=float(area),
                    segmentation=[[float(v) for v in poly]],
                    iscrowd=0))
            ann_id += 1
        name = f'{img_id:012d}.jpg'
        img.save(osp.join(root, 'images', name), quality=95)
        images.append(dict(id=img_id, file_name=name, height=h, width=w))
    coco = dict(
        images=images,
        annotations=annotations,
        categories=[
            dict(id=i + 1, name=n, supercategory='thing')
            for i, n in enumerate(COCO_CLASSES)
        ])
    path = osp.join(root, 'annotations', 'instances.json')
    with open(path, 'w') as f:
        json.dump(coco, f)
    return path


def write_ade20k(root: str) -> None:
    """ADE20K layout: ``images/{training,validation}/*.jpg`` and
    ``annotations/{training,validation}/*.png`` (0 = other, 1..150 =
    classes, as in ADEChallengeData2016)."""
    rng = np.random.default_rng(1)
    for split, prefix in (('training', 'ADE_train'),
                          ('validation', 'ADE_val')):
        os.makedirs(osp.join(root, 'images', split), exist_ok=True)
        os.makedirs(osp.join(root, 'annotations', split), exist_ok=True)
        for i, (h, w) in enumerate(IMAGE_SIZES[:2], start=1):
            label = np.zeros((h, w), dtype=np.uint8)
            label[:h // 2, :] = 1 + i  # sky-ish band
            label[h // 2:, :w // 2] = 4
            label[h // 2:, w // 2:] = 13
            label[:8, :8] = 0  # some 'other' pixels (ignored)
            img = rng.integers(0, 40, (h, w, 3), dtype=np.uint8)
            img += (label[..., None] * 15).astype(np.uint8)
            name = f'{prefix}_{i:08d}'
            Image.fromarray(img).save(
                osp.join(root, 'images', split, name + '.jpg'), quality=95)
            Image.fromarray(label).save(
                osp.join(root, 'annotations', split, name + '.png'))


# ------------------------------------------------------------ config edits


def _walk_transforms(pipeline, fn):
    """Apply ``fn`` to every transform dict, nested choices included."""
    if isinstance(pipeline, dict):
        fn(pipeline)
        for key in ('transforms', ):
            if key in pipeline:
                _walk_transforms(pipeline[key], fn)
    elif isinstance(pipeline, (list, tuple)):
        for t in pipeline:
            _walk_transforms(t, fn)


def _small_loader(loader, batch_size=2):
    loader.batch_size = batch_size
    loader.num_workers = 0
    loader.persistent_workers = False


def _tiny_cvt(config: str) -> Config:
    """``config`` with the tiny CvT arch and no checkpoint to load."""
    cfg = Config.fromfile(config)
    cfg.model.backbone.arch = TINY_ARCH
    cfg.model.backbone.init_cfg = None
    return cfg


def _runtime(cfg, work_dir):
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=0)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.env_cfg = dict(
        cudnn_benchmark=False,
        mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
        dist_cfg=dict(backend='gloo'))
    cfg.launcher = 'none'


def tiny_mask_rcnn_cfg(config: str, data_root: str, work_dir: str,
                       batch_size: int = 2) -> Config:
    """``config`` (a Mask R-CNN CvT config) on the tiny COCO data, with the
    tiny CvT arch and narrow neck / heads; one epoch, then validation."""
    cfg = _tiny_cvt(config)
    model = cfg.model
    model.neck.in_channels = TINY_CHANNELS
    model.neck.out_channels = NECK_CHANNELS
    model.rpn_head.in_channels = NECK_CHANNELS
    model.rpn_head.feat_channels = NECK_CHANNELS
    roi = model.roi_head
    roi.bbox_roi_extractor.out_channels = NECK_CHANNELS
    roi.bbox_head.in_channels = NECK_CHANNELS
    roi.bbox_head.fc_out_channels = 64
    roi.bbox_head.num_classes = len(COCO_CLASSES)
    roi.mask_roi_extractor.out_channels = NECK_CHANNELS
    roi.mask_head.in_channels = NECK_CHANNELS
    roi.mask_head.conv_out_channels = NECK_CHANNELS
    roi.mask_head.num_classes = len(COCO_CLASSES)
    # fewer proposals / sampled RoIs / detections: CPU time, not behaviour
    model.train_cfg.rpn_proposal.update(nms_pre=300, max_per_img=100)
    model.train_cfg.rcnn.sampler.num = 64
    model.test_cfg.rpn.update(nms_pre=300, max_per_img=100)
    model.test_cfg.rcnn.max_per_img = 20

    def small(t):  # keep the 200x264 / 264x200 images at their size
        if t.get('type') == 'Resize':
            t['scale'] = (264, 264)

    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[name]
        _small_loader(loader, batch_size)
        ds = loader.dataset
        ds.data_root = data_root
        ds.ann_file = 'annotations/instances.json'
        ds.data_prefix = dict(img='images/')
        ds.metainfo = dict(classes=COCO_CLASSES)
        _walk_transforms(ds.pipeline, small)
    ann_file = osp.join(data_root, 'annotations', 'instances.json')
    for name in ('val_evaluator', 'test_evaluator'):
        cfg[name].ann_file = ann_file
    cfg.train_cfg.max_epochs = 1
    cfg.train_cfg.val_interval = 1
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    _runtime(cfg, work_dir)
    return cfg


def tiny_upernet_cfg(config: str, data_root: str, work_dir: str,
                     crop_size=(120, 168), max_iters: int = 2) -> Config:
    """``config`` (a UperNet CvT config) on the tiny ADE20K data, with the
    tiny CvT arch and narrow heads; ``max_iters`` iterations, then
    validation at the images' own 200x264 / 264x200 size."""
    cfg = _tiny_cvt(config)
    model = cfg.model
    model.data_preprocessor.size = crop_size
    model.decode_head.in_channels = TINY_CHANNELS
    model.decode_head.channels = 32
    model.auxiliary_head.in_channels = TINY_CHANNELS[2]
    model.auxiliary_head.channels = 16

    def small(t):
        if t.get('type') in ('RandomResize', 'Resize'):
            t['scale'] = (264, 200)
        if t.get('type') == 'RandomCrop':
            t['crop_size'] = crop_size

    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[name]
        # whole-image inference: mmseg validates one image per batch
        _small_loader(loader, 2 if name == 'train_dataloader' else 1)
        loader.dataset.data_root = data_root
        _walk_transforms(loader.dataset.pipeline, small)
    cfg.train_cfg.max_iters = max_iters
    cfg.train_cfg.val_interval = max_iters
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', by_epoch=False, interval=max_iters)
    _runtime(cfg, work_dir)
    return cfg


# ------------------------------------------------------------------ running


class RecordHook(Hook):
    """Keeps every training loss and the validation metrics."""

    def __init__(self):
        self.losses, self.metrics = [], None

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.losses.append(float(torch.as_tensor(outputs['loss']).detach()))

    def after_val_epoch(self, runner, metrics=None):
        self.metrics = metrics


def train_recorded(cfg: Config):
    """Trains (and validates) ``cfg`` with mmengine's Runner; returns the
    runner and the :class:`RecordHook` that watched it."""
    runner = Runner.from_cfg(cfg)
    record = RecordHook()
    runner.register_hook(record)
    runner.train()
    return runner, record


def check_trained(runner: Runner, record: RecordHook, checkpoint: str,
                  weight_decay: float) -> None:
    """Two finite training losses, validation metrics, ``checkpoint`` in the
    work dir, and the config's optimizer: AdamW with ``weight_decay`` and
    the no-decay groups."""
    assert len(record.losses) == 2
    assert all(math.isfinite(v) for v in record.losses)
    assert record.metrics is not None
    assert osp.isfile(osp.join(runner.work_dir, checkpoint))
    optimizer = runner.optim_wrapper.optimizer
    assert type(optimizer).__name__ == 'AdamW'
    assert {g['weight_decay']
            for g in optimizer.param_groups} == {0., weight_decay}


def backward_one_batch(runner: Runner, nonzero_grads=()):
    """The first training batch through the preprocessor and the model in
    train mode, its total loss back-propagated. Checks that the loss is
    finite, that every backbone parameter gets a finite gradient and that the
    ones named in ``nonzero_grads`` get a non-zero one; returns the
    preprocessed data and the loss dict (gradients zeroed again)."""
    model = runner.model
    model.train()
    model.zero_grad()
    batch = next(iter(runner.train_dataloader))
    data = model.data_preprocessor(batch, True)
    losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    loss.backward()
    params = dict(model.backbone.named_parameters())
    for name, p in params.items():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    for name in nonzero_grads:
        assert params[name].grad.abs().sum() > 0, name
    model.zero_grad()
    return data, losses


def predict_val_batch(runner: Runner):
    """The first validation batch and the model's predictions for it, in
    eval mode."""
    model = runner.model
    model.eval()
    batch = next(iter(runner.val_dataloader))
    with torch.no_grad():
        results = model.test_step(batch)
    return batch, results


def evaluate_ground_truth_det(runner: Runner, data_root: str) -> dict:
    """The config's own COCO evaluator applied to the ground truth of the
    written json as predictions (boxes, rasterised polygon masks, score 1):
    a correct evaluation set-up scores a bbox and segm mAP of 1."""
    with open(osp.join(data_root, 'annotations', 'instances.json')) as f:
        coco = json.load(f)
    samples = []
    for img in coco['images']:
        h, w = img['height'], img['width']
        anns = [a for a in coco['annotations'] if a['image_id'] == img['id']]
        masks = []
        for a in anns:
            canvas = Image.new('L', (w, h), 0)
            ImageDraw.Draw(canvas).polygon(a['segmentation'][0], fill=1)
            masks.append(np.asarray(canvas, dtype=bool))
        samples.append(
            dict(
                img_id=img['id'],
                ori_shape=(h, w),
                pred_instances=dict(
                    bboxes=torch.tensor([[x, y, x + bw, y + bh]
                                         for x, y, bw, bh in (a['bbox']
                                                              for a in anns)
                                         ]),
                    scores=torch.ones(len(anns)),
                    # labels index the classes of the data set's meta
                    labels=torch.tensor([a['category_id'] - 1
                                         for a in anns]),
                    masks=torch.from_numpy(np.stack(masks)))))
    evaluator = runner.val_evaluator
    evaluator.process(samples)
    return evaluator.evaluate(len(samples))


def evaluate_ground_truth_seg(runner: Runner, shift: int = 0) -> dict:
    """The config's own IoU evaluator on the validation batches with the
    ground truth (class ids + ``shift``) as the prediction."""
    evaluator = runner.val_evaluator
    n = 0
    for batch in runner.val_dataloader:
        samples = []
        for sample in batch['data_samples']:
            gt = sample.gt_sem_seg.data
            pred = torch.where(gt == 255, gt, (gt + shift) % 150)
            samples.append(
                dict(
                    pred_sem_seg=dict(data=pred),
                    gt_sem_seg=dict(data=gt)))
        evaluator.process(samples)
        n += len(samples)
    return evaluator.evaluate(n)


def _set_num_classes(node, n: int) -> None:
    """Every head of a model config (cascade stages included) to ``n``
    classes."""
    if isinstance(node, dict):
        if 'num_classes' in node:
            node['num_classes'] = n
        for value in node.values():
            _set_num_classes(value, n)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _set_num_classes(value, n)


def full_size_cfg(config: str, data_root: str, work_dir: str) -> Config:
    """``config`` as published (the CvT-13 arch, its ``hf://`` weights and
    the recipe's heads at full width) on the tiny COCO / ADE20K data, with
    the pipelines' scales shrunk to the 200x264 / 264x200 images, the
    detection heads to the data's two classes, batch 2,
    fp32 (a CPU has no mixed precision); two training iterations (one epoch
    of the three COCO images), then validation."""
    cfg = Config.fromfile(config)
    det = cfg.default_scope == 'mmdet'
    if cfg.optim_wrapper.type == 'AmpOptimWrapper':
        cfg.optim_wrapper.type = 'OptimWrapper'
        cfg.optim_wrapper.pop('loss_scale', None)

    def small(t):
        kind = t.get('type')
        if kind == 'RandomChoiceResize':
            t['scales'] = [(264, 264)] if det else [200, 232]
        elif kind == 'Resize':
            t['scale'] = (264, 264) if det else (264, 200)
        elif kind == 'RandomCrop':
            t['crop_size'] = (120, 168)

    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[name]
        _small_loader(loader, 2 if det or name == 'train_dataloader' else 1)
        ds = loader.dataset
        ds.data_root = data_root
        if det:
            ds.ann_file = 'annotations/instances.json'
            ds.data_prefix = dict(img='images/')
            ds.metainfo = dict(classes=COCO_CLASSES)
        _walk_transforms(ds.pipeline, small)
    model = cfg.model
    if det:
        _set_num_classes(model, len(COCO_CLASSES))
    # fewer proposals, sampled RoIs, queries, points: CPU time, not widths
    if 'rpn_proposal' in model.get('train_cfg', {}):
        model.train_cfg.rpn_proposal.update(nms_pre=300, max_per_img=100)
        for stage in model.train_cfg.rcnn:
            stage.sampler.num = 32
        model.test_cfg.rpn.update(nms_pre=300, max_per_img=100)
        # two iterations score every box below the recipe's 0.05: keep
        # them all, so the predictions and the evaluation have something to
        # check
        model.test_cfg.rcnn.update(score_thr=0.0, max_per_img=20)
    if model.type == 'DINO':
        model.num_queries = 100
        model.dn_cfg.group_cfg.num_dn_queries = 20
        model.test_cfg.max_per_img = 50
    if det:
        ann_file = osp.join(data_root, 'annotations', 'instances.json')
        for name in ('val_evaluator', 'test_evaluator'):
            cfg[name].ann_file = ann_file
        cfg.train_cfg = dict(
            type='EpochBasedTrainLoop', max_epochs=1, val_interval=1)
        cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    else:
        model.data_preprocessor.size = (120, 168)
        model.decode_head.train_cfg.num_points = 1568  # of 12544
        cfg.train_cfg = dict(
            type='IterBasedTrainLoop', max_iters=2, val_interval=2)
        cfg.default_hooks.checkpoint = dict(
            type='CheckpointHook', by_epoch=False, interval=2)
    cfg.param_scheduler = None
    _runtime(cfg, work_dir)
    return cfg
