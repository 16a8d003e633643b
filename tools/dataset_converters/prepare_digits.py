"""Write scikit-learn's handwritten digits as an mmpretrain image folder.

The 1,797 real 8x8 grey-scale digit images (UCI "Optical Recognition of
Handwritten Digits", test part) ship inside scikit-learn, so nothing is
downloaded. They are upscaled (bilinear) to ``--size`` pixels, stored as RGB
PNG files and split deterministically (stratified, ``--seed``) into a
training and a validation set, in the layout of mmpretrain's
``CustomDataset``::

    OUT/
        classes.txt                  # 0 .. 9, one per line
        train/<digit>/<index>.png    # class folders give the labels
        val/<digit>/<index>.png
        meta/train.txt               # "<digit>/<index>.png <label>" lines,
        meta/val.txt                 # usable as `ann_file` (optional)
        meta/settings.json           # the arguments it was written with

A folder written with other ``--size`` / ``--val-ratio`` / ``--seed`` is
rewritten; one written with the same settings is reused.

Usage::

    python tools/dataset_converters/prepare_digits.py [--out data/digits]

The demo config ``configs/demo/cvt-tiny_digits.py`` reads ``data/digits``.
"""
import argparse
import json
import os
import os.path as osp
import shutil
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _owned import claim  # noqa: E402

SPLITS = ('train', 'val')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert the scikit-learn digits to an image folder')
    parser.add_argument(
        '--out', default='data/digits', help='output folder (data root)')
    parser.add_argument(
        '--size',
        type=int,
        default=32,
        help='side of the written images in pixels (default: 32)')
    parser.add_argument(
        '--val-ratio',
        type=float,
        default=0.2,
        help='fraction of every class kept for validation (default: 0.2)')
    parser.add_argument(
        '--seed', type=int, default=0, help='seed of the split (default: 0)')
    parser.add_argument(
        '--force',
        action='store_true',
        help='rewrite the folder even if it is already complete')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='replace train/ and val/ of --out also when another program '
        'wrote them (by default only this tool\'s own output is replaced)')
    return parser.parse_args(argv)


def split_indices(labels: np.ndarray, val_ratio: float,
                  seed: int) -> dict:
    """Stratified, deterministic split: per class, a seeded permutation,
    the first ``round(n * val_ratio)`` images go to validation."""
    if not 0 < val_ratio < 1:
        raise ValueError(f'--val-ratio must be in (0, 1), got {val_ratio}')
    rng = np.random.RandomState(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_val = int(round(len(idx) * val_ratio))
        val.extend(idx[:n_val].tolist())
        train.extend(idx[n_val:].tolist())
    return dict(train=sorted(train), val=sorted(val))


def to_image(pixels: np.ndarray, size: int) -> Image.Image:
    """8x8 values in [0, 16] -> ``size`` x ``size`` RGB image."""
    grey = np.clip(pixels * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
    img = Image.fromarray(grey)  # uint8 (H, W): mode 'L'
    if size != grey.shape[0]:
        img = img.resize((size, size), Image.BILINEAR)
    return img.convert('RGB')


def _settings_file(out: str) -> str:
    return osp.join(out, 'meta', 'settings.json')


def _complete(out: str, splits: dict, settings: dict) -> bool:
    """Whether ``out`` holds every image of ``splits``, written with these
    settings."""
    try:
        with open(_settings_file(out)) as f:
            if json.load(f) != settings:
                return False
    except (OSError, ValueError):
        return False
    for split, idx in splits.items():
        ann = osp.join(out, 'meta', f'{split}.txt')
        if not osp.isfile(ann):
            return False
        with open(ann) as f:
            lines = [line for line in f if line.strip()]
        if len(lines) != len(idx):
            return False
        if not all(
                osp.isfile(osp.join(out, split, line.split()[0]))
                for line in lines):
            return False
    return True


def prepare_digits(out: str = 'data/digits',
                   size: int = 32,
                   val_ratio: float = 0.2,
                   seed: int = 0,
                   force: bool = False,
                   overwrite: bool = False) -> dict:
    """Write the data set; returns the number of images per split.

    Raises:
        FileExistsError: If ``out`` holds ``train/`` or ``val/`` that this
            tool did not write and ``overwrite`` is False.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, labels = digits.images, digits.target
    splits = split_indices(labels, val_ratio, seed)
    counts = {k: len(v) for k, v in splits.items()}
    settings = dict(size=size, val_ratio=val_ratio, seed=seed)
    if not force and _complete(out, splits, settings):
        print(f'{out} is already complete ({counts}, {settings}); use '
              '--force to rewrite')
        return counts
    if size < 1:
        raise ValueError(f'--size must be a positive number of pixels, got '
                         f'{size}')
    claim(out, 'prepare_digits', SPLITS, settings, overwrite)
    # a rewrite drops the old settings first: an interrupted one is redone
    if osp.exists(_settings_file(out)):
        os.remove(_settings_file(out))

    for split in SPLITS:
        shutil.rmtree(osp.join(out, split), ignore_errors=True)
    os.makedirs(osp.join(out, 'meta'), exist_ok=True)
    classes = [str(c) for c in range(10)]
    with open(osp.join(out, 'classes.txt'), 'w') as f:
        f.write('\n'.join(classes) + '\n')

    for split in SPLITS:
        lines = []
        for c in classes:
            os.makedirs(osp.join(out, split, c), exist_ok=True)
        for i in splits[split]:
            label = int(labels[i])
            rel = f'{label}/{i:04d}.png'
            to_image(images[i], size).save(osp.join(out, split, rel))
            lines.append(f'{rel} {label}')
        with open(osp.join(out, 'meta', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
    with open(_settings_file(out), 'w') as f:
        json.dump(settings, f)
    print(f'wrote {counts["train"]} training and {counts["val"]} validation '
          f'images ({size}x{size} RGB PNG, 10 classes) to {out}')
    return counts


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        prepare_digits(args.out, args.size, args.val_ratio, args.seed,
                       args.force, args.overwrite)
    except FileExistsError as e:
        print(f'prepare_digits.py: error: {e}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
