"""Train a model from an mmpretrain, mmdet or mmseg config with mmengine's Runner.

The config's ``default_scope`` picks the toolkit; ``type='mmcvt.CvT'`` resolves
from any of them. Examples::

    python tools/train.py configs/cvt/cvt-21_imagenet.py
    python tools/train.py CONFIG --resume                 # latest checkpoint
    python tools/train.py CONFIG --resume work_dirs/x/iter_100.pth
    bash tools/dist_train.sh CONFIG 8                     # torchrun, 8 processes
"""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import mmcvt  # noqa: F401  (applies the compatibility fixes)


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
        'train_dataloader.batch_size=32 model.backbone.arch=21')
    return parse_with_launcher(parser, argv)


def parse_with_launcher(parser: argparse.ArgumentParser,
                        argv=None) -> argparse.Namespace:
    """Adds ``--launcher`` and ``--local-rank`` (shared with tools/test.py)
    to ``parser`` and parses ``argv``."""
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def _dataloaders(cfg: Config):
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(name) is not None:
            yield cfg[name]


def merge_common_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Merge ``--cfg-options``, ``--launcher`` and ``--work-dir`` (shared
    with tools/test.py) into the config."""
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher

    # work_dir: command line > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    return cfg


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Merge the command line arguments into the config."""
    cfg = merge_common_args(cfg, args)

    if args.amp:
        optim_wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if optim_wrapper == 'AmpOptimWrapper':
            print('AMP is already enabled in the config.')
        else:
            if optim_wrapper != 'OptimWrapper':
                raise ValueError(
                    f'--amp replaces the optimizer wrapper with '
                    f'AmpOptimWrapper, but the config uses {optim_wrapper}. '
                    f'Set the wrapper in the config instead.')
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(
                f'--resume {args.resume}: no such checkpoint. Give a .pth '
                f'file, or --resume alone for the latest one in the work dir.')
        cfg.resume = True
        cfg.load_from = args.resume

    if args.auto_scale_lr:
        base = cfg.get('auto_scale_lr', {}).get('base_batch_size')
        if base is None:
            raise ValueError(
                '--auto-scale-lr needs `auto_scale_lr = dict('
                'base_batch_size=N)` in the config: the total batch size its '
                'learning rate was tuned for.')
        cfg.auto_scale_lr.enable = True

    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None

    for loader in _dataloaders(cfg):
        if args.no_pin_memory:
            loader['pin_memory'] = False
        # torch refuses persistent workers without worker processes
        if args.no_persistent_workers or loader.get('num_workers', 0) == 0:
            loader['persistent_workers'] = False
    return cfg


def build_runner(cfg: Config) -> Runner:
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    cfg = merge_args(cfg, args)
    runner = build_runner(cfg)
    runner.train()
    shutdown_distributed()


def shutdown_distributed() -> None:
    """Destroy the process group before the interpreter exits: a gloo group
    left to interpreter teardown can abort a rank ("terminate called
    without an active exception") after a successful run."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == '__main__':
    main()
