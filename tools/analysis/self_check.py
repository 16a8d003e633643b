#!/usr/bin/env python
# Copyright (c) mmcvt contributors. All rights reserved.
"""Hardware self-check: on this machine's device, every fast path against
the official formulation (fp32, fp16 and bf16 autocast), the attention
kernels that run, fp16 AMP steps, activation checkpointing, torch.compile,
which precision pays, and a benchmark against ``transformers``. The checks
are described in ``mmcvt/utils/self_check.py``.

    python tools/analysis/self_check.py          # the GPU if any, else the CPU
    python tools/analysis/self_check.py --device cpu --out report.json
    python tools/analysis/self_check.py --only fast_paths sdpa amp
    python tools/analysis/self_check.py --quick  # a small arch: a smoke test

Exits with 1 if a correctness check fails; timings are information.
"""
import argparse
import os
import os.path as osp
import sys

# Silence the Kineto chatter of the profiler passes (see benchmark.py);
# before torch is imported.
os.environ.setdefault('KINETO_LOG_LEVEL', '6')
# runnable from a checkout without installing mmcvt
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

import torch  # noqa: E402

from mmcvt.utils import self_check  # noqa: E402


def _hw(text: str):
    parts = text.lower().split('x')
    try:
        hw = tuple(int(p) for p in parts)
    except ValueError:
        hw = ()
    if len(hw) not in (1, 2) or min(hw) < 1:
        raise argparse.ArgumentTypeError(
            f'a size is S or HxW in pixels (e.g. 224, 800x1333), got {text!r}')
    return hw * 2 if len(hw) == 1 else hw


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description='mmcvt hardware self-check',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available()
                   else 'cpu', help='cpu | cuda | cuda:N')
    p.add_argument('--out', help='write the report here (JSON)')
    p.add_argument('--only', nargs='+', choices=self_check.SECTIONS,
                   default=list(self_check.SECTIONS), metavar='SECTION',
                   help=f'run these sections only: {self_check.SECTIONS}')
    p.add_argument('--skip', nargs='+', choices=self_check.SECTIONS,
                   default=[], metavar='SECTION', help='skip these sections')
    p.add_argument('--quick', action='store_true',
                   help='a small arch and small inputs: a smoke test')
    p.add_argument('--arch', default='13', choices=['13', '21', 'w24'])
    p.add_argument('--size', type=_hw, default=(224, 224),
                   help='classifier input of the timings')
    p.add_argument('--batch-size', type=int, default=None,
                   help='batch of the timings (default 64 on a GPU, 8 on '
                   'the CPU)')
    p.add_argument('--dense-size', type=_hw, default=None,
                   help='input of the dense backbone timing (default '
                   '800x1333 on a GPU, 512x512 on the CPU)')
    p.add_argument('--dense-batch-size', type=int, default=None,
                   help='its batch (default 2 on a GPU, 1 on the CPU)')
    p.add_argument('--bench-dtype', default='bf16',
                   choices=['fp32', 'bf16', 'fp16'],
                   help='autocast dtype of the comparison with transformers')
    p.add_argument('--repeats', type=int, default=5)
    args = p.parse_args(argv)
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        from mmcvt.utils.device import unusable_gpus_message
        p.error('--device cuda, but torch cannot use a GPU here' + (
            f': {unusable_gpus_message()}' if unusable_gpus_message() else
            ' (none is visible)'))
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    sections = [s for s in args.only if s not in args.skip]
    json_dir = osp.dirname(osp.abspath(args.out)) if args.out else None
    report = self_check.run(
        args.device, sections, quick=args.quick, arch=args.arch,
        size=args.size, batch=args.batch_size, bench_dtype=args.bench_dtype,
        repeats=args.repeats, dense_size=args.dense_size,
        dense_batch=args.dense_batch_size, json_dir=json_dir)
    env = report['environment']
    print(f"\n# mmcvt self-check on {env['name']} ({env['device']}), torch "
          f"{env['torch']}: {'PASSED' if report['passed'] else 'FAILED'}")
    for name, result in report['checks'].items():
        print(f'  {name:<16} {self_check.summary(name, result)}')
    if args.out:
        self_check.write(report, args.out)
        print(f'wrote {args.out}')
    if not report['passed']:
        sys.exit(1)
    return report


if __name__ == '__main__':
    main()
