#!/usr/bin/env python
"""Training curves of one or more runs on one figure: the training loss and
a validation metric against the iteration, read from the scalar logs that
mmengine writes in each work dir (``<timestamp>/vis_data/scalars.json``).

    python tools/analysis/plot_curves.py WORK_DIR [WORK_DIR ...] \\
        --out curves.png [--labels A B ...] [--metric mIoU]

Work dirs that do not exist are left out with a note (``tools/demo.sh``
names the control runs, which a user may not have trained).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
from mmcvt.utils.curves import plot_curves, read_curves  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('work_dirs', nargs='+')
    parser.add_argument('--out', required=True, help='the PNG to write')
    parser.add_argument('--labels', nargs='+',
                        help='one per work dir (default: folder names)')
    parser.add_argument('--metric', help='validation metric to draw '
                        '(default: mIoU, coco/bbox_mAP or accuracy/top1)')
    parser.add_argument('--title')
    args = parser.parse_args(argv)
    labels = args.labels or [None] * len(args.work_dirs)
    if len(labels) != len(args.work_dirs):
        parser.error(f'{len(labels)} --labels for {len(args.work_dirs)} '
                     'work dirs')
    runs = []
    for work_dir, label in zip(args.work_dirs, labels):
        if not osp.isdir(work_dir):
            print(f'plot_curves: {work_dir} not there, left out')
            continue
        runs.append(read_curves(work_dir, label))
    if not runs:
        parser.error('none of the work dirs exists')
    metric = plot_curves(runs, args.out, args.metric, args.title)
    print(f'plot_curves: training loss and {metric} of '
          f'{", ".join(r.name for r in runs)} -> {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
