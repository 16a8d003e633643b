"""A tiny mmpretrain classification job for the tool tests: a real image-folder
data set written to disk and a config that trains in seconds on CPU."""
import os
import os.path as osp
import textwrap

import numpy as np
from PIL import Image

CONFIG = '''
_base_ = ['mmpretrain::_base_/default_runtime.py']
default_scope = 'mmpretrain'
model = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet_CIFAR', depth=18, num_stages=1,
                  strides=(1, ), dilations=(1, ), out_indices=(0, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=2, in_channels=64,
              loss=dict(type='CrossEntropyLoss')))
data_preprocessor = dict(num_classes=2, mean=[127.5] * 3, std=[127.5] * 3)
pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=4, num_workers=0,
    dataset=dict(type='CustomDataset', data_root={root!r},
                 data_prefix='train', pipeline=pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=4, num_workers=0,
    dataset=dict(type='CustomDataset', data_root={root!r},
                 data_prefix='val', pipeline=pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.01))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=8, by_epoch=False)]
train_cfg = dict(by_epoch=False, max_iters=8, val_interval=4)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
    logger=dict(type='LoggerHook', interval=1))
randomness = dict(seed=0)
'''


def write_dataset(root: str, per_class: int = 8, size: int = 16) -> None:
    """Two classes that differ in brightness, as PNG files in class folders."""
    rng = np.random.default_rng(0)
    for split in ('train', 'val'):
        for label, (lo, hi) in enumerate([(0, 100), (155, 255)]):
            folder = osp.join(root, split, f'class{label}')
            os.makedirs(folder, exist_ok=True)
            for i in range(per_class):
                img = rng.integers(lo, hi, (size, size, 3), dtype=np.uint8)
                Image.fromarray(img).save(osp.join(folder, f'{i}.png'))


def write_job(tmp_path) -> str:
    """Write the data set and the config; return the config path."""
    root = str(tmp_path / 'data')
    write_dataset(root)
    cfg = tmp_path / 'tiny_cls.py'
    cfg.write_text(textwrap.dedent(CONFIG.format(root=root)))
    return str(cfg)
