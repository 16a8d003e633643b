#!/usr/bin/env python
"""Pictures stacked top to bottom into one PNG, enlarged with nearest
neighbour: e.g. the README's prediction pictures from the files that
``tools/test.py --show-dir`` writes (mmdet: ground truth and prediction side
by side, one file a test image).

    python tools/visualization/stack_pictures.py A.png B.png ... --out X.png \\
        [--scale 2] [--gap 8]
"""
import argparse
import os.path as osp
import sys

import numpy as np
from PIL import Image

# runnable from a checkout without installing mmcvt
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

from mmcvt.utils.visualization import stack  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('pictures', nargs='+')
    p.add_argument('--out', required=True)
    p.add_argument('--scale', type=int, default=2)
    p.add_argument('--gap', type=int, default=8, help='white rows between')
    args = p.parse_args(argv)
    missing = [f for f in args.pictures if not osp.isfile(f)]
    if missing:
        p.error(f'no such picture: {", ".join(missing)}')
    if args.scale < 1 or args.gap < 0:
        p.error('--scale must be >= 1 and --gap >= 0')
    panels = [np.asarray(Image.open(f).convert('RGB')) for f in args.pictures]
    Image.fromarray(stack(panels, args.scale, args.gap)).save(args.out)
    print(f'stack_pictures: {len(panels)} pictures -> {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
