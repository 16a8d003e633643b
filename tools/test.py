"""Evaluate a checkpoint on the test set of an mmpretrain, mmdet or mmseg
config.

Examples::

    python tools/test.py CONFIG CHECKPOINT
    python tools/test.py configs/cvt/cvt-13_imagenet.py hf://microsoft/cvt-13
    python tools/test.py CONFIG CHECKPOINT --out results.pkl
    python tools/test.py CONFIG CHECKPOINT --show-dir vis  # pictures
    bash tools/dist_test.sh CONFIG CHECKPOINT 8
"""
import argparse
import json
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.dist import is_main_process
from mmengine.evaluator import DumpResults

import mmcvt  # noqa: F401  (applies the compatibility fixes)
from mmcvt.cli import (
    build_runner,
    enable_visualization,
    load_for_testing,
    merge_common_args,
    parse_with_launcher,
    shutdown_distributed,
)
from mmcvt.utils.data_check import DataNotFoundError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Evaluate a checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument(
        'checkpoint',
        help='checkpoint file (.pth, .bin, .safetensors) or hub model '
        '(hf://owner/repo[/file])')
    parser.add_argument('--work-dir', help='the dir to save logs and results')
    parser.add_argument(
        '--out', help='dump the predictions to this pickle file')
    parser.add_argument(
        '--show-dir',
        help='draw the predictions on every test image into this folder '
        '(inside the work dir when relative) with the '
        'toolkit\'s visualizer')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value pairs')
    return parse_with_launcher(parser, argv)


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def main(argv=None) -> None:
    args = parse_args(argv)
    # a local file, or a URL such as hf://microsoft/cvt-13 (mmcvt.checkpoint)
    if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint} not found')
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out must be a .pkl file, got {args.out}')
    cfg = merge_common_args(Config.fromfile(args.config), args)
    # loaded below, where what it leaves out can be checked
    cfg.load_from = None
    if cfg.get('test_dataloader') is not None and cfg.test_dataloader.get(
            'num_workers', 0) == 0:
        cfg.test_dataloader.persistent_workers = False

    if args.show_dir is not None:
        enable_visualization(cfg, args.show_dir)

    runner = build_runner(cfg, loaders=('test_dataloader', ))
    load_for_testing(runner, args.checkpoint)
    if args.out is not None:
        runner.test_evaluator.metrics.append(
            DumpResults(out_file_path=args.out))
    metrics = runner.test()
    if is_main_process():
        # the metrics once more, for scripts: <work dir>/metrics.json
        with open(osp.join(cfg.work_dir, 'metrics.json'), 'w') as f:
            json.dump({k: _number(v) for k, v in metrics.items()}, f,
                      indent=1)
    shutdown_distributed()


if __name__ == '__main__':
    try:
        main()
    except DataNotFoundError as e:  # a clear message, not a traceback
        raise SystemExit(f'{osp.basename(__file__)}: error: {e}')
