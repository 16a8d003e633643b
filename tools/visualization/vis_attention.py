#!/usr/bin/env python
# Copyright (c) mmcvt contributors. All rights reserved.
"""Pictures of what a CvT looks at, over the image at its own resolution.

    # the class token's attention in the last block (per head and averaged)
    python tools/visualization/vis_attention.py CONFIG CHECKPOINT IMAGE \\
        --out attn.png
    # the attention of the query at 40% height, 60% width in stage 0
    python tools/visualization/vis_attention.py CONFIG CHECKPOINT IMAGE \
        --stage 0 --query 0.4 0.6 --out query.png
    # every stage's feature map (first three principal components as RGB)
    python tools/visualization/vis_attention.py CONFIG CHECKPOINT IMAGE \\
        --features --out feats.png

CHECKPOINT is a file or a hub model (``hf://microsoft/cvt-13``). The output is
one PNG: the image, then the mean over heads and each head (attention), or
each stage (features), side by side at the image's size. Attention is read
with forward hooks (``ConvAttention.attention_weights``): the model's forward
is unchanged. Keys and values come from the stride-2 projection, so the
attention lives on a grid half the size of the query grid.
"""
import argparse
import os
import os.path as osp
import sys

import numpy as np
import torch

# runnable from a checkout without installing mmcvt
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

import mmcvt  # noqa: E402,F401
from mmcvt.apis import init_model, normalisation  # noqa: E402
from mmcvt.utils import visualization as vis  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='CvT attention / feature maps')
    p.add_argument('config')
    p.add_argument('checkpoint', help='file or hf://owner/repo')
    p.add_argument('image')
    p.add_argument('--out', required=True, help='output .png')
    p.add_argument('--stage', type=int, default=-1, help='stage (-1: last)')
    p.add_argument('--block', type=int, default=-1, help='block (-1: last)')
    p.add_argument(
        '--query',
        nargs=2,
        type=float,
        metavar=('Y', 'X'),
        help='relative query position in [0, 1); default: the class token')
    p.add_argument('--features', action='store_true',
                   help='stage feature maps instead of attention')
    p.add_argument('--max-size', type=int, default=1024,
                   help='downscale larger images to this longer side')
    p.add_argument('--scale', type=int, default=1,
                   help='enlarge the output picture (nearest) this many '
                   'times, for small images')
    p.add_argument('--device', default='cpu',
                   help='device the model runs on, e.g. cuda')
    args = p.parse_args(argv)
    if args.query and not all(0 <= v < 1 for v in args.query):
        p.error(f'--query takes relative positions in [0, 1), got '
                f'{args.query}')
    return args


def read_image(path: str, max_size: int) -> np.ndarray:
    from PIL import Image
    img = Image.open(path).convert('RGB')
    scale = max_size / max(img.size)
    if scale < 1:
        img = img.resize((round(img.width * scale),
                          round(img.height * scale)), Image.BICUBIC)
    return np.array(img)


def render(args) -> np.ndarray:
    model, cfg = init_model(args.config, args.checkpoint)
    mean, std = normalisation(cfg)
    backbone = model.backbone
    image = read_image(args.image, args.max_size)
    # (H, W, 3) uint8 -> (1, 3, H, W), normalised as the config does
    x = (torch.from_numpy(image).permute(2, 0, 1)[None].float() - mean) / std
    backbone, x = backbone.to(args.device), x.to(args.device)
    if args.features:
        maps = vis.feature_maps(backbone, x)
        panels = [image] + [vis.feature_pca(m[0]) for m in maps]
        return vis.strip(panels, _size(image, args.scale))
    infos = vis.attention_maps(backbone, x)
    stage = range(backbone.num_stages)[args.stage]
    blocks = [m for m in infos if m['stage'] == stage]
    info = blocks[args.block]
    attn = (vis.query_attention(info, *args.query)
            if args.query else vis.cls_token_attention(info))[0]
    panels = [image, vis.overlay(image, attn.mean(0))]
    panels += [vis.overlay(image, head) for head in attn]
    return vis.strip(panels, _size(image, args.scale))


def _size(image: np.ndarray, scale: int) -> tuple:
    return image.shape[0] * scale, image.shape[1] * scale


def main(argv=None) -> str:
    from PIL import Image
    args = parse_args(argv)
    picture = render(args)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    Image.fromarray(picture).save(args.out)
    print(f'wrote {args.out} ({picture.shape[1]}x{picture.shape[0]})')
    return args.out


if __name__ == '__main__':
    main()
