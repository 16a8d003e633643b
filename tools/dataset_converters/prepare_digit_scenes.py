"""Write a small real dense data set: scenes of handwritten digits.

Every scene pastes several of the real 8x8 digit scans that scikit-learn
ships (UCI "Optical Recognition of Handwritten Digits", no download),
upscaled to varied sizes, at random places of a non-square canvas with a
textured, noisy background and stroke-like distractors. The digits of the
training scenes and those of the validation scenes are different scans
(a stratified split). It is written in the formats the toolkits read::

    OUT/
        images/{train,val}/<index>.png         RGB scenes
        annotations/instances_{train,val}.json COCO instances: boxes, masks
                                               of the digit strokes (RLE),
                                               10 categories '0'..'9'
        seg_maps/{train,val}/<index>.png       label maps: 0 background,
                                               1 + digit for the strokes
        meta/settings.json                     the arguments it was written
                                               with

A folder written with the same arguments is reused; other arguments rewrite
it. The same arguments always give the same files.

Usage::

    python tools/dataset_converters/prepare_digit_scenes.py \\
        [--out data/digit_scenes]
"""
import argparse
import json
import os
import os.path as osp
import shutil
import sys
from typing import Dict, Tuple

import numpy as np
from PIL import Image

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _owned import claim  # noqa: E402

SPLITS = ('train', 'val')
CLASSES = tuple(str(d) for d in range(10))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description='Scenes of handwritten digits')
    p.add_argument('--out', default='data/digit_scenes')
    p.add_argument('--num-train', type=int, default=800)
    p.add_argument('--num-val', type=int, default=100)
    p.add_argument('--height', nargs=2, type=int, default=[96, 160],
                   metavar=('MIN', 'MAX'), help='canvas height range')
    p.add_argument('--width', nargs=2, type=int, default=[128, 224],
                   metavar=('MIN', 'MAX'), help='canvas width range')
    p.add_argument('--digits', nargs=2, type=int, default=[2, 5],
                   metavar=('MIN', 'MAX'), help='digits per scene')
    p.add_argument('--digit-size', nargs=2, type=int, default=[20, 48],
                   metavar=('MIN', 'MAX'), help='digit side in pixels')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--force', action='store_true',
                   help='rewrite even if the folder is complete')
    p.add_argument('--overwrite', action='store_true',
                   help='replace images/, annotations/, seg_maps/ and meta/ '
                   'of --out also when another program wrote them (by '
                   'default only this tool\'s own output is replaced)')
    args = p.parse_args(argv)
    for name in ('height', 'width', 'digits', 'digit_size'):
        lo, hi = getattr(args, name)
        if not 0 < lo <= hi:
            p.error(f'--{name.replace("_", "-")} needs 0 < MIN <= MAX, got '
                    f'{lo} {hi}')
    if args.digit_size[1] > min(args.height[0], args.width[0]):
        p.error('--digit-size MAX must fit the smallest canvas')
    if args.num_train < 1 or args.num_val < 1:
        p.error('--num-train and --num-val must be positive')
    return args


def _settings(args) -> dict:
    return {k: v for k, v in sorted(vars(args).items()) if k not in
            ('out', 'force', 'overwrite')}


def split_digits(labels: np.ndarray, seed: int) -> Dict[str, np.ndarray]:
    """A stratified 80/20 split of the digit scans: training scenes and
    validation scenes use different scans. It is the split of
    ``prepare_digits.py`` with the same seed, so the validation scenes hold
    only scans that the digits classifier (the dense demos' starting
    point) never trained on."""
    rng = np.random.RandomState(seed)
    train, val = [], []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_val = int(round(0.2 * len(idx)))
        val += idx[:n_val].tolist()
        train += idx[n_val:].tolist()
    return dict(train=np.array(sorted(train)), val=np.array(sorted(val)))


def _background(rng: np.random.RandomState, h: int, w: int) -> np.ndarray:
    """Low-frequency colour texture, pixel noise and a few bright strokes
    (distractors that are not digits), float RGB in [0, 255]."""
    coarse = rng.uniform(20, 140, (max(2, h // 24), max(2, w // 24), 3))
    img = np.asarray(
        Image.fromarray(coarse.astype(np.uint8)).resize((w, h),
                                                        Image.BICUBIC),
        dtype=np.float64)
    img += rng.normal(0, 12, (h, w, 3))
    for _ in range(rng.randint(1, 4)):  # distractor strokes
        y0, x0 = rng.randint(0, h), rng.randint(0, w)
        length, angle = rng.randint(10, 40), rng.uniform(0, np.pi)
        colour = rng.uniform(120, 255, 3)
        for t in np.linspace(0, 1, length * 2):
            y = int(y0 + t * length * np.sin(angle))
            x = int(x0 + t * length * np.cos(angle))
            img[max(0, y - 1):y + 1, max(0, x - 1):x + 1] = colour
    return np.clip(img, 0, 255)


def _digit(scan: np.ndarray, size: int) -> np.ndarray:
    """An 8x8 scan (0..16) upscaled to ``size`` x ``size``, in [0, 1]."""
    img = Image.fromarray((scan * (255 / 16)).astype(np.uint8))
    return np.asarray(img.resize((size, size), Image.BILINEAR)) / 255.


def _rle(mask: np.ndarray) -> dict:
    """A binary mask as COCO run-length encoding (exact, holes included:
    a polygon of the outer contour would fill the loop of a 0, 6, 8, 9)."""
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return dict(size=list(rle['size']), counts=rle['counts'].decode())


def make_scene(rng: np.random.RandomState, images: np.ndarray,
               labels: np.ndarray, args) -> Tuple[np.ndarray, np.ndarray,
                                                  list]:
    """One scene: ``(RGB uint8, label map uint8, instances)``; an instance
    is ``(label, bbox xywh, mask)``."""
    h = rng.randint(args.height[0], args.height[1] + 1)
    w = rng.randint(args.width[0], args.width[1] + 1)
    img = _background(rng, h, w)
    seg = np.zeros((h, w), np.uint8)
    instances, boxes = [], []
    for _ in range(rng.randint(args.digits[0], args.digits[1] + 1)):
        for _attempt in range(20):  # a place that overlaps no other digit
            size = rng.randint(args.digit_size[0], args.digit_size[1] + 1)
            y, x = rng.randint(0, h - size + 1), rng.randint(0, w - size + 1)
            if all(x + size <= bx or bx + bs <= x or y + size <= by
                   or by + bs <= y for by, bx, bs in boxes):
                break
        else:
            continue
        i = rng.randint(len(labels))
        alpha = _digit(images[i], size)
        stroke = alpha > 0.35
        if stroke.sum() < 8:
            continue
        colour = rng.uniform(150, 255, 3)
        region = img[y:y + size, x:x + size]
        region[:] = (1 - alpha[..., None]) * region + alpha[..., None] * colour
        mask = np.zeros((h, w), bool)
        mask[y:y + size, x:x + size] = stroke
        seg[mask] = labels[i] + 1
        ys, xs = np.nonzero(mask)
        bbox = [float(xs.min()), float(ys.min()),
                float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
        instances.append((int(labels[i]), bbox, mask))
        boxes.append((y, x, size))
    return img.round().astype(np.uint8), seg, instances


def _complete(out: str, settings: dict) -> bool:
    try:
        with open(osp.join(out, 'meta', 'settings.json')) as f:
            if json.load(f) != settings:
                return False
        for split in SPLITS:
            with open(osp.join(out, 'annotations',
                               f'instances_{split}.json')) as f:
                coco = json.load(f)
            for im in coco['images']:
                name = im['file_name']
                if not (osp.isfile(osp.join(out, 'images', split, name))
                        and osp.isfile(osp.join(out, 'seg_maps', split,
                                                name))):
                    return False
    except (OSError, ValueError, KeyError):
        return False
    return True


def prepare_digit_scenes(args) -> Dict[str, int]:
    """Write the data set (or reuse a complete one written with the same
    settings); returns the number of scenes per split."""
    from sklearn.datasets import load_digits
    settings = _settings(args)
    counts = dict(train=args.num_train, val=args.num_val)
    out = args.out
    if not args.force and _complete(out, settings):
        print(f'{out} is already complete ({counts}); use --force to '
              'rewrite')
        return counts
    subdirs = ('images', 'annotations', 'seg_maps', 'meta')
    claim(out, 'prepare_digit_scenes', subdirs, settings,
          getattr(args, 'overwrite', False))
    for sub in subdirs:
        shutil.rmtree(osp.join(out, sub), ignore_errors=True)
    digits = load_digits()
    scans = split_digits(digits.target, args.seed)
    categories = [
        dict(id=c + 1, name=name, supercategory='digit')
        for c, name in enumerate(CLASSES)
    ]
    for s, split in enumerate(SPLITS):
        rng = np.random.RandomState(args.seed * 1000 + s + 1)
        idx = scans[split]
        images, labels = digits.images[idx], digits.target[idx]
        os.makedirs(osp.join(out, 'images', split), exist_ok=True)
        os.makedirs(osp.join(out, 'seg_maps', split), exist_ok=True)
        coco_images, annotations = [], []
        for n in range(counts[split]):
            img, seg, instances = make_scene(rng, images, labels, args)
            name = f'{n:05d}.png'
            Image.fromarray(img).save(osp.join(out, 'images', split, name))
            Image.fromarray(seg).save(osp.join(out, 'seg_maps', split, name))
            coco_images.append(
                dict(id=n + 1, file_name=name, height=img.shape[0],
                     width=img.shape[1]))
            for label, bbox, mask in instances:
                annotations.append(
                    dict(
                        id=len(annotations) + 1,
                        image_id=n + 1,
                        category_id=label + 1,
                        bbox=bbox,
                        area=float(mask.sum()),
                        segmentation=_rle(mask),
                        iscrowd=0))
        os.makedirs(osp.join(out, 'annotations'), exist_ok=True)
        with open(osp.join(out, 'annotations', f'instances_{split}.json'),
                  'w') as f:
            json.dump(
                dict(images=coco_images, annotations=annotations,
                     categories=categories), f)
    os.makedirs(osp.join(out, 'meta'), exist_ok=True)
    with open(osp.join(out, 'meta', 'settings.json'), 'w') as f:
        json.dump(settings, f)  # last: an interrupted run is redone
    print(f'wrote {counts["train"]} training and {counts["val"]} validation '
          f'scenes of handwritten digits to {out}')
    return counts


def main(argv=None) -> int:
    try:
        prepare_digit_scenes(parse_args(argv))
    except FileExistsError as e:
        print(f'prepare_digit_scenes.py: error: {e}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
