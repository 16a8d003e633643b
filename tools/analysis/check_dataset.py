#!/usr/bin/env python
# Copyright (c) mmcvt contributors. All rights reserved.
"""Check a config's data sets before a long job, with the toolkit's own
dataset classes: unreadable or empty images (and segmentation maps), COCO
annotations that loading would drop (unknown categories or images, boxes of
no width or height) and images without annotations, with counts and names.

    python tools/analysis/check_dataset.py CONFIG [--splits train val]
    python tools/analysis/check_dataset.py CONFIG --no-decode   # faster

Exits with 1 if any data set has an error (images without annotations are
reported, not errors).
"""
import argparse
import os.path as osp
import sys

# runnable from a checkout without installing mmcvt
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

from mmengine.config import Config, DictAction  # noqa: E402

import mmcvt  # noqa: E402,F401
from mmcvt.utils.data_check import (  # noqa: E402
    ERRORS,
    DataNotFoundError,
    check_data_roots,
    check_dataset,
)

LABELS = dict(unreadable='unreadable images',
              unknown_category='annotations of unknown categories (dropped)',
              unknown_image='annotations of unknown images (dropped)',
              bad_box='boxes of no width or height (dropped)',
              empty_image='images without annotations')


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description='Check the data sets of a config')
    p.add_argument('config')
    p.add_argument('--splits', nargs='+', default=['train', 'val', 'test'],
                   choices=['train', 'val', 'test'])
    p.add_argument('--no-decode', action='store_true',
                   help='check that the images are there and not empty, '
                   'without decoding them')
    p.add_argument('--max-names', type=int, default=10,
                   help='names listed per problem')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    try:
        check_data_roots(cfg, args.config)
    except DataNotFoundError as e:
        print(f'check_dataset.py: error: {e}', file=sys.stderr)
        return 1
    failed, seen = False, set()
    for split in args.splits:
        loader = f'{split}_dataloader'
        if not cfg.get(loader) or repr(cfg[loader].dataset) in seen:
            continue
        seen.add(repr(cfg[loader].dataset))
        try:
            report = check_dataset(cfg, loader, not args.no_decode)
        except (KeyError, ValueError, OSError) as e:
            print(f'{split}: error: {e}')
            failed = True
            continue
        counts = ', '.join(f'{v:,} {k}' for k, v in report['counts'].items())
        print(f'{split}: {counts}')
        for key, label in LABELS.items():
            names = report.get(key) or []
            if names:
                failed |= key in ERRORS
                tag = 'error' if key in ERRORS else 'note'
                print(f'  {tag}: {len(names):,} {label}')
                for name in names[:args.max_names]:
                    print(f'    {name}')
                if len(names) > args.max_names:
                    print(f'    ... and {len(names) - args.max_names:,} more')
    print('FAILED' if failed else 'OK')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
