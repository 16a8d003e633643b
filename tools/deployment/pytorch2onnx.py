#!/usr/bin/env python
# Copyright (c) mmcvt contributors. All rights reserved.
"""Export a CvT to ONNX, deploy form (every projection BatchNorm folded into
its convolution), with dynamic batch, height and width, and check it with
onnxruntime against PyTorch.

    # a classifier: images -> logits
    python tools/deployment/pytorch2onnx.py configs/cvt/cvt-13_imagenet.py \
        hf://microsoft/cvt-13 --out cvt-13.onnx
    # the backbone of any config: images -> the multi-scale maps (dense use)
    python tools/deployment/pytorch2onnx.py CONFIG CHECKPOINT --backbone-only \
        --out cvt-13_backbone.onnx

The model is traced by ``torch.export`` (``torch.onnx.export(dynamo=True)``),
which keeps the token grid sizes symbolic, so one file serves any input size
the model accepts. Opset 18 (default): attention runs on the standard
``scaled_dot_product_attention`` path, written as MatMul / Softmax / MatMul,
which onnxruntime and every opset-18 runtime execute (ONNX's own Attention
operator needs opset 23). The input is the normalised
image tensor ``(B, 3, H, W)``: apply the config's mean / std first. The check
runs both at two input sizes (``--check-shapes``) and fails above
``--tolerance`` (max abs difference).
"""
import argparse
import os.path as osp
import sys

import numpy as np
import torch

# runnable from a checkout without installing mmcvt
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

import mmcvt  # noqa: E402,F401
from mmcvt.apis import TensorForward, init_model  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='CvT to ONNX')
    p.add_argument('config')
    p.add_argument('checkpoint', nargs='?', default=None,
                   help='file or hf://owner/repo (default: random weights)')
    p.add_argument('--out', required=True, help='output .onnx')
    p.add_argument('--backbone-only', action='store_true',
                   help='export the backbone, every stage as a (B, C, h, w) '
                   'output')
    p.add_argument('--shape', nargs=2, type=int, default=[224, 224],
                   metavar=('H', 'W'), help='example input size to trace')
    p.add_argument('--opset', type=int, default=18)
    p.add_argument(
        '--check-shapes',
        nargs='+',
        type=int,
        default=[1, 224, 224, 2, 160, 288],
        metavar='B H W',
        help='input sizes (B H W triples) to compare with PyTorch on')
    p.add_argument('--tolerance', type=float, default=1e-4)
    args = p.parse_args(argv)
    if len(args.check_shapes) % 3:
        p.error('--check-shapes takes B H W triples')
    args.check_shapes = [
        tuple(args.check_shapes[i:i + 3])
        for i in range(0, len(args.check_shapes), 3)
    ]
    return args


def exportable(config: str, checkpoint=None, backbone_only: bool = False):
    """The module to export: the deploy-form classifier (logits) or backbone
    (one map per stage), and its output names."""
    model, _ = init_model(config, checkpoint)
    backbone = model.backbone
    backbone.switch_to_deploy()
    if backbone_only or not hasattr(model, 'head'):
        backbone.out_indices = list(range(backbone.num_stages))
        backbone.out_type = 'featmap'
        return backbone.eval(), [f'stage{i}' for i in backbone.out_indices]
    return TensorForward(model).eval(), ['logits']


def check_export_shape(module: torch.nn.Module, shape) -> None:
    """torch.export fixes every dimension that is 1 in the example input:
    a token or key grid one token wide at the export shape would make the
    exported height / width static."""
    from mmcvt.models import CvT
    from mmcvt.models.utils.cvt_spec import token_grids
    cvt = next(m for m in module.modules() if isinstance(m, CvT))
    for i, (grid, kv) in enumerate(token_grids(cvt.specs, tuple(shape))):
        if min(grid + kv) <= 1:
            raise ValueError(
                f'--shape {shape[0]} {shape[1]} gives stage {i + 1} a '
                f'{grid[0]}x{grid[1]} token grid with {kv[0]}x{kv[1]} keys: '
                f'torch.export would fix the input size on a dimension of '
                f'size 1 and the ONNX model would take no other. Export at '
                f'a larger --shape (e.g. {2 * shape[0]} {2 * shape[1]}).')


def export(module: torch.nn.Module, outputs, path: str, shape, opset: int):
    # batch 2 in the example: torch.export specialises dimensions of size 1
    x = torch.randn(2, 3, *shape)
    batch, height, width = (torch.export.Dim(n, min=1, max=4096)
                            for n in ('batch', 'height', 'width'))
    torch.onnx.export(
        module, (x, ),
        path,
        dynamo=True,
        opset_version=opset,
        input_names=['input'],
        output_names=outputs,
        dynamic_shapes=({0: batch, 2: height, 3: width}, ),
        verbose=False)


def check(module: torch.nn.Module, path: str, shapes) -> list:
    """Max abs difference of onnxruntime vs PyTorch at each ``(B, H, W)``."""
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    diffs = []
    for b, h, w in shapes:
        x = torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            ref = module(x)
        ref = [ref] if isinstance(ref, torch.Tensor) else list(ref)
        got = session.run(None, {'input': x.numpy()})
        assert [o.shape for o in got] == [tuple(r.shape) for r in ref]
        diffs.append(
            max(float(np.abs(o - r.numpy()).max()) for o, r in zip(got, ref)))
    return diffs


def main(argv=None) -> list:
    args = parse_args(argv)
    module, outputs = exportable(args.config, args.checkpoint,
                                 args.backbone_only)
    check_export_shape(module, args.shape)
    export(module, outputs, args.out, args.shape, args.opset)
    diffs = check(module, args.out, args.check_shapes)
    for shape, d in zip(args.check_shapes, diffs):
        print(f'input {shape}: max |onnxruntime - pytorch| = {d:.2e}')
    worst = max(diffs)
    if worst > args.tolerance:
        raise SystemExit(f'{args.out}: onnxruntime differs from PyTorch by '
                         f'{worst:.2e} > --tolerance {args.tolerance}')
    print(f'wrote {args.out} (outputs: {", ".join(outputs)})')
    return diffs


if __name__ == '__main__':
    main()
