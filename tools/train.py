"""Train a model from an mmpretrain, mmdet or mmseg config with mmengine's
Runner.

The config's ``default_scope`` picks the toolkit; ``type='mmcvt.CvT'`` resolves
from any of them. Examples::

    python tools/train.py configs/cvt/cvt-21_imagenet.py
    python tools/train.py CONFIG --resume                 # latest checkpoint
    python tools/train.py CONFIG --resume work_dirs/x/iter_100.pth
    bash tools/dist_train.sh CONFIG 8        # torchrun, 8 processes
"""
import argparse
import os.path as osp

from mmengine.config import Config, DictAction

import mmcvt  # noqa: F401  (applies the compatibility fixes)
from mmcvt.cli import (
    build_runner,
    check_resume_fits,
    merge_args,
    parse_with_launcher,
    shutdown_distributed,
)
from mmcvt.utils.data_check import DataNotFoundError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint; without a path, from the '
        'latest checkpoint in the work dir')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='enable automatic mixed precision training (needs a GPU)')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='do not evaluate checkpoints during training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the actual total batch size '
        'relative to `auto_scale_lr.base_batch_size` of the config')
    parser.add_argument(
        '--no-pin-memory',
        action='store_true',
        help='do not pin memory in the dataloaders')
    parser.add_argument(
        '--no-persistent-workers',
        action='store_true',
        help='do not keep dataloader workers alive between epochs')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value pairs, e.g. '
        'train_dataloader.batch_size=32 model.backbone.arch=cvt-21')
    return parse_with_launcher(parser, argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    cfg = merge_args(cfg, args)
    runner = build_runner(cfg)
    if cfg.get('resume') and cfg.get('load_from'):
        check_resume_fits(runner, cfg.load_from)
    runner.train()
    shutdown_distributed()


if __name__ == '__main__':
    try:
        main()
    except DataNotFoundError as e:  # a clear message, not a traceback
        raise SystemExit(f'{osp.basename(__file__)}: error: {e}')
