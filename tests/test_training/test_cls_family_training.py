"""Each classification config family trains two iterations and validates on
tiny data written in that data set's real on-disk format.

The configs run as they are (their transforms incl. RandAugment / random
erasing, Mixup / CutMix, label smoothing, optimizer, parameter schedulers,
hooks), shrunk only in model width/depth (a tiny custom arch), image size
(64 px, every size of the pipelines scaled alike), batch size (2), data
(a handful of images) and length (2 iterations).
"""
import os.path as osp

import pytest
import torch
from _cvt_train_utils import (
    CONFIG_DIR,
    save_tiny_backbone_checkpoint,
    shrink_config,
    write_cifar,
    write_flowers102,
    write_imagenet,
    write_imagenet21k,
    write_oxford_pets,
)
from mmengine.config import Config
from mmengine.runner import Runner

import mmcvt  # noqa: F401

WRITERS = {
    'imagenet': write_imagenet,
    'imagenet21k': write_imagenet21k,
    'cifar10': write_cifar,
    'cifar100': lambda root: write_cifar(root, cifar100=True),
    'pets': write_oxford_pets,
    'flowers': write_flowers102,
}

# (config, data set format): one config per family and data set, and one
# ablation per table of the paper (they differ in the backbone: position
# embeddings, patch embedding, key/value stride, linear projections; the
# other ablation configs are built by tests/test_configs)
CASES = [
    ('cvt/cvt-13_imagenet.py', 'imagenet'),
    ('cvt/cvt-21_imagenet-384px.py', 'imagenet'),
    ('cvt/cvt-w24_in21k.py', 'imagenet21k'),
    ('cvt/cvt-13_in21k-pre_in1k-384px.py', 'imagenet'),
    ('cvt_transfer/cvt-13_in21k-pre_cifar10-384px.py', 'cifar10'),
    ('cvt_transfer/cvt-21_in21k-pre_cifar100-384px.py', 'cifar100'),
    ('cvt_transfer/cvt-w24_in21k-pre_oxford-pets-384px.py', 'pets'),
    ('cvt_transfer/cvt-13_in21k-pre_flowers102-384px.py', 'flowers'),
] + [(f'cvt_ablation/{name}', 'imagenet') for name in (
    'cvt-13_pos-embed-first_imagenet.py',  # Table 5
    'cvt-13_patch-embed-pos-embed_imagenet.py',  # Table 6
    'cvt-13_kv-stride1_imagenet.py',  # Table 7
    'cvt-13_conv-proj-stage1_imagenet.py',  # Table 8
)]

MARKER = 0.125  # stage-0 embedding weights of the "pre-trained" checkpoint


@pytest.fixture(scope='module')
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp('cls_data')
    return {
        name: writer(str(root / name))
        for name, writer in WRITERS.items()
    }


def _skip_cifar_checksums(monkeypatch):
    """mmpretrain's CIFAR datasets check the files' md5 sums against the
    official tarball's (and otherwise try to download it); files written
    here cannot match them, so only the sums are dropped, names and format
    are still checked."""
    from mmpretrain.datasets import CIFAR10, CIFAR100
    for cls in (CIFAR10, CIFAR100):
        for attr in ('train_list', 'test_list'):
            files = [[name, None] for name, _ in getattr(cls, attr)]
            monkeypatch.setattr(cls, attr, files)
        monkeypatch.setattr(cls, 'meta', dict(cls.meta, md5=None))
        monkeypatch.setattr(cls, 'url', None)  # never download in a test


@pytest.mark.parametrize('rel,data', CASES, ids=[c[0] for c in CASES])
def test_family_trains_two_iters_and_validates(rel, data, datasets,
                                               tmp_path, monkeypatch):
    _skip_cifar_checksums(monkeypatch)
    cfg = Config.fromfile(osp.join(CONFIG_DIR, rel))
    cfg = shrink_config(cfg, str(tmp_path / 'work'), datasets[data])
    finetune = cfg.model.backbone.get('init_cfg') is not None
    if finetune:  # load a real (tiny) checkpoint through the config's init
        cfg.model.backbone.init_cfg.checkpoint = save_tiny_backbone_checkpoint(
            str(tmp_path / 'pretrained.pth'), MARKER)
    if cfg.train_cfg.get('type') == 'IterBasedTrainLoop':
        cfg.train_cfg.max_iters = 2
        cfg.train_cfg.val_interval = 2
    else:  # 4 training images / batch 2 = 2 iterations in one epoch
        cfg.train_cfg.max_epochs = 1
        cfg.train_cfg.val_interval = 1

    runner = Runner.from_cfg(cfg)
    runner.train()

    assert runner.iter == 2
    scalars = runner.message_hub.log_scalars
    losses = scalars['train/loss'].data[0]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    top1 = scalars['val/accuracy/top1'].data[0]
    assert len(top1) == 1 and 0 <= top1[0] <= 100
    last = 'iter_2.pth' if finetune else 'epoch_1.pth'
    assert osp.isfile(osp.join(cfg.work_dir, last))
    if finetune:  # the backbone started from the checkpoint (lr ~ 3e-6)
        w = runner.model.backbone.stages[0].patch_embed.proj.weight
        assert (w - MARKER).abs().max().item() < 1e-3
    if data == 'imagenet' and 'augments' in (cfg.model.get('train_cfg')
                                             or {}):
        assert runner.model.data_preprocessor.batch_augments is not None
