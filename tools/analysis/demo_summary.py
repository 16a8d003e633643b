#!/usr/bin/env python
"""The metrics of ``bash tools/demo.sh`` in one table: the classifier's
top-1, and the detector's and segmenter's metrics at each test scale, read
from the ``metrics.json`` files that ``tools/test.py`` leaves in the test
work dirs; then the pictures the demo drew (training curves, predictions).

    python tools/analysis/demo_summary.py [--work-dirs work_dirs] [--job all]
"""
import argparse
import glob
import json
import os.path as osp
import sys

JOBS = {
    'cls': ('cvt-tiny_digits', ['accuracy/top1']),
    'det': ('mask-rcnn_cvt-tiny_fpn_digit-scenes',
            ['coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP']),
    'seg': ('upernet_cvt-tiny_digit-scenes', ['mIoU', 'aAcc']),
}


def _scale(test_dir: str) -> str:
    """``test_224x160`` -> ``224x160``; the classifier's ``test`` -> ``-``."""
    name = osp.basename(test_dir)
    return name[len('test_'):] if name.startswith('test_') else '-'


def summary(work_dirs: str, job: str = 'all') -> list:
    """Rows ``(job, test scale, metric, value)`` of every finished test."""
    rows = []
    for name, (folder, keys) in JOBS.items():
        if job not in ('all', name):
            continue
        tests = [(_scale(osp.dirname(path)), path) for path in glob.glob(
            osp.join(work_dirs, folder, 'test*', 'metrics.json'))]
        # by test scale, smallest first ('-': the classifier's one test)
        for scale, path in sorted(
                tests, key=lambda t: int(t[0].split('x')[0])
                if t[0] != '-' else 0):
            with open(path) as f:
                metrics = json.load(f)
            rows += [(name, scale, key, metrics[key]) for key in keys
                     if key in metrics]
    return rows


def pictures(work_dirs: str, job: str = 'all') -> list:
    """The demo's pictures that exist: each job's ``curves.png`` and the
    dense jobs' ``pictures.png``."""
    return [
        path for name, (folder, _) in JOBS.items() if job in ('all', name)
        for path in (osp.join(work_dirs, folder, 'curves.png'),
                     osp.join(work_dirs, folder, 'pictures.png'))
        if osp.isfile(path)
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dirs', default='work_dirs')
    parser.add_argument('--job', default='all', choices=['all', *JOBS])
    args = parser.parse_args(argv)
    rows = summary(args.work_dirs, args.job)
    if not rows:
        print(f'no test results under {args.work_dirs}', file=sys.stderr)
        return 1
    print('\nmmcvt demo results (validation sets)')
    print(f'{"job":<5} {"test scale":<11} {"metric":<18} value')
    for job, scale, key, value in rows:
        print(f'{job:<5} {scale:<11} {key:<18} {value:.4g}')
    drawn = pictures(args.work_dirs, args.job)
    if drawn:
        print('pictures: ' + ', '.join(drawn))
    return 0


if __name__ == '__main__':
    sys.exit(main())
