#!/usr/bin/env python
# Copyright (c) mmcvt contributors. All rights reserved.
"""How a semantic segmenter paints each object: for every instance of a COCO
instance file, the classes predicted on its mask's pixels. A per-pixel head
may paint one object in several classes; a mask-classification head
(Mask2Former) tends to give it one.

    python tools/analysis/instance_purity.py CONFIG CHECKPOINT \\
        --ann-file data/digit_scenes/annotations/instances_val.json \\
        --img-dir data/digit_scenes/images/val

Instances are matched to the segmenter's classes by name. For each one,
among its pixels predicted as some object class (not the background class):
the majority class and its share, and how many classes reach
``--min-share`` of them ("mixed": two or more). Prints the totals; ``--out``
writes them and the per-instance rows as JSON.
"""
import argparse
import copy
import json
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np

# runnable from a checkout without installing mmcvt
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))


def instance_rows(pred: np.ndarray, instances: Sequence,
                  background: Optional[int], min_share: float) -> List[Dict]:
    """One row per ``(mask, class)`` instance of the label map ``pred``:
    ``painted`` (share of the mask predicted as an object class),
    ``majority`` (the most frequent object class there, None if none),
    ``share`` (its share of the painted pixels), ``right`` (the majority is
    the instance's class) and ``classes`` (object classes with at least
    ``min_share`` of the painted pixels)."""
    rows = []
    for mask, label in instances:
        mask = mask.astype(bool)
        values = pred[mask]
        if background is not None:
            values = values[values != background]
        total = int(mask.sum())
        row = dict(label=int(label), pixels=total,
                   painted=len(values) / max(total, 1), majority=None,
                   share=0.0, right=False, classes=0)
        if len(values):
            classes, counts = np.unique(values, return_counts=True)
            shares = counts / counts.sum()
            best = int(np.argmax(counts))
            row.update(majority=int(classes[best]), share=float(shares[best]),
                       right=int(classes[best]) == int(label),
                       classes=int((shares >= min_share).sum()))
        rows.append(row)
    return rows


def totals(rows: Sequence[Dict]) -> Dict:
    """Per-instance rows summed up: instances, their share painted at all,
    right majorities, mean majority share and mixed instances (%)."""
    n = len(rows)
    pct = 100.0 / max(n, 1)
    painted = [r for r in rows if r['majority'] is not None]
    return dict(
        instances=n,
        painted=len(painted) * pct,
        right_majority=sum(r['right'] for r in rows) * pct,
        mean_majority_share=100 * float(
            np.mean([r['share'] for r in painted])) if painted else 0.0,
        mixed=sum(r['classes'] >= 2 for r in rows) * pct)


def background_index(names: Sequence[str], background: str,
                     config: str) -> Optional[int]:
    """The index of the no-object class ``background`` among ``names``;
    None for ``''`` (every class is an object class)."""
    if not background:
        return None
    if background not in names:
        raise SystemExit(
            f'instance_purity.py: --background "{background}" is not a class '
            f'of {config} ({", ".join(names)}); name its no-object class, or '
            'pass --background "" if it has none')
    return list(names).index(background)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('--ann-file', required=True,
                   help='COCO instances (boxes and masks) of the images')
    p.add_argument('--img-dir', required=True, help='the images')
    p.add_argument('--background', default='background',
                   help='name of the class that is no object (default: '
                   'background; "" for none)')
    p.add_argument('--min-share', type=float, default=0.1,
                   help='share of an instance\'s painted pixels that counts '
                   'a class as present (default: 0.1)')
    p.add_argument('--device', default='cpu')
    p.add_argument('--out', help='JSON file for the totals and the rows')
    return p.parse_args(argv)


def main(argv=None) -> Dict:
    args = parse_args(argv)
    from mmseg.apis import inference_model, init_model
    from pycocotools.coco import COCO

    import mmcvt  # noqa: F401
    model = init_model(args.config, args.checkpoint, device=args.device)
    # inference_model reads cfg.test_pipeline, which a config that sets only
    # its test dataloader's pipeline (the demo configs) inherits from the
    # recipe, at the recipe's scale: predict as tools/test.py does
    model.cfg.test_pipeline = copy.deepcopy(
        model.cfg.test_dataloader.dataset.pipeline)
    names = list(model.dataset_meta['classes'])
    coco = COCO(args.ann_file)
    index = {}
    for cat in coco.loadCats(coco.getCatIds()):
        if cat['name'] not in names:
            raise SystemExit(
                f'instance_purity.py: category "{cat["name"]}" of '
                f'{args.ann_file} is not a class of {args.config} '
                f'({", ".join(names)}); instances are matched by name')
        index[cat['id']] = names.index(cat['name'])
    background = background_index(names, args.background, args.config)
    rows = []
    for img in coco.loadImgs(coco.getImgIds()):
        result = inference_model(model,
                                 osp.join(args.img_dir, img['file_name']))
        pred = result.pred_sem_seg.data[0].cpu().numpy()
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img['id']))
        rows += instance_rows(pred, [(coco.annToMask(a), index[a[
            'category_id']]) for a in anns], background, args.min_share)
    result = totals(rows)
    print(f'{result["instances"]} instances: painted {result["painted"]:.1f}'
          f'%, right majority {result["right_majority"]:.1f}%, mean '
          f'majority share {result["mean_majority_share"]:.1f}%, mixed '
          f'(>= 2 classes of >= {args.min_share:.0%}) {result["mixed"]:.1f}%')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(totals=result, rows=rows), f, indent=1)
    return result


if __name__ == '__main__':
    main()
