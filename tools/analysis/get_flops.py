#!/usr/bin/env python
# Copyright (c) mmcvt contributors. All rights reserved.
"""Multiply-accumulates and parameters of a CvT config at any input size,
per stage, attention matmuls included (and shown apart).

    python tools/analysis/get_flops.py configs/cvt/cvt-13_imagenet.py \\
        --shape 224
    python tools/analysis/get_flops.py CONFIG --shape 800 1333 --shape 512

For an mmpretrain config the total is the whole classifier (backbone +
head); for mmdet / mmseg configs it is the backbone (necks and heads depend
on the data samples). Counted on the ``meta`` device: no memory, no weights
(see ``mmcvt/utils/flops.py``).
"""
import argparse
import os.path as osp
import sys

import torch
from mmengine.config import Config, DictAction

# runnable from a checkout without installing mmcvt
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

import mmcvt  # noqa: E402,F401
from mmcvt.apis import TensorForward  # noqa: E402
from mmcvt.utils.flops import count_model, format_table  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='GMACs and parameters per stage')
    p.add_argument('config')
    p.add_argument(
        '--shape',
        nargs='+',
        type=int,
        action='append',
        default=None,
        help='input size H [W]; repeat for several sizes (default: 224)')
    p.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='config overrides key=value (as tools/train.py)')
    args = p.parse_args(argv)
    shapes = args.shape or [[224]]
    for s in shapes:
        if len(s) not in (1, 2) or min(s) < 1:
            p.error(f'--shape takes H or H W (positive), got {s}')
    args.shapes = [(s[0], s[-1]) for s in shapes]
    return args


def build(cfg):
    """(model to count, its CvT backbone), on the meta device."""
    from mmengine.registry import MODELS, DefaultScope
    scope = cfg.get('default_scope', 'mmpretrain')
    with DefaultScope.overwrite_default_scope(scope), torch.device('meta'):
        if scope == 'mmpretrain':
            model = MODELS.build(cfg.model).eval()
            return TensorForward(model), model.backbone
        backbone = MODELS.build(cfg.model.backbone).eval()
        return backbone, backbone


def main(argv=None) -> list:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    model, backbone = build(cfg)
    results = []
    for shape in args.shapes:
        result = count_model(model, backbone, shape)
        results.append(result)
        print(format_table(result, f'{osp.basename(args.config)}:'))
        print()
    return results


if __name__ == '__main__':
    main()
