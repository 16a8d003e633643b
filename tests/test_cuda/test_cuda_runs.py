"""What needs a GPU (marked ``cuda``: skipped, with that reason, on a
machine without one): mmcv's CUDA kernels against its CPU ones (NMS,
RoIAlign, multi-scale deformable attention), and a
deterministic training run through tools/train.py that repeats exactly.
The fast paths on the GPU: test_tools/test_self_check.py."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from test_foundation.tiny_classification import write_job

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

pytestmark = pytest.mark.cuda


def test_mmcv_ops_on_cuda_match_the_cpu():
    from mmcv.ops import get_compiling_cuda_version, nms, roi_align
    assert get_compiling_cuda_version() == torch.version.cuda
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(200, 2, generator=gen) * 100
    boxes = torch.cat([xy, xy + 5 + torch.rand(200, 2, generator=gen) * 30],
                      1)
    scores = torch.rand(200, generator=gen)
    keep_cpu = nms(boxes, scores, 0.5)[1]
    keep_gpu = nms(boxes.cuda(), scores.cuda(), 0.5)[1].cpu()
    assert keep_gpu.tolist() == keep_cpu.tolist()
    feat = torch.randn(2, 8, 32, 40, generator=gen)
    rois = torch.cat([torch.tensor([[0.], [1.], [1.]]),
                      torch.tensor([[1., 2., 20., 30.], [0., 0., 39., 31.],
                                    [5.5, 3.2, 9.1, 17.8]])], 1)
    ref = roi_align(feat, rois, (7, 7), 1.0, 2, 'avg', True)
    got = roi_align(feat.cuda(), rois.cuda(), (7, 7), 1.0, 2, 'avg', True)
    torch.testing.assert_close(got.cpu(), ref, rtol=1e-4, atol=1e-5)



def test_multi_scale_deformable_attention_cuda_matches_the_cpu():
    """mmcv's compiled multi-scale deformable attention (DINO, Mask2Former
    on a GPU) against its PyTorch path, checked on the CPU by
    test_foundation/test_mmcv_ops.py: outputs and the gradients of the
    value, the sampling locations and the attention weights."""
    from mmcv.ops.multi_scale_deform_attn import (
        MultiScaleDeformableAttnFunction,
        multi_scale_deformable_attn_pytorch,
    )
    gen = torch.Generator().manual_seed(0)
    shapes = torch.tensor([[12, 20], [6, 10], [3, 5]])
    starts = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    bs, heads, dims, queries, points = 2, 4, 8, 30, 4
    value = torch.randn(bs, int(shapes.prod(1).sum()), heads, dims,
                        generator=gen, dtype=torch.float64)
    loc = torch.rand(bs, queries, heads, len(shapes), points, 2,
                     generator=gen, dtype=torch.float64) * 1.2 - 0.1
    weights = torch.rand(bs, queries, heads, len(shapes), points,
                         generator=gen, dtype=torch.float64).softmax(-1)
    grad_out = torch.randn(bs, queries, heads * dims, generator=gen,
                           dtype=torch.float64)
    results = []
    for device in ('cpu', 'cuda'):
        inputs = [t.to(device).requires_grad_() for t in (value, loc,
                                                          weights)]
        if device == 'cpu':
            out = multi_scale_deformable_attn_pytorch(
                inputs[0], shapes, inputs[1], inputs[2])
        else:
            out = MultiScaleDeformableAttnFunction.apply(
                inputs[0], shapes.cuda(), starts.cuda(), inputs[1],
                inputs[2], 64)
        out.backward(grad_out.to(device))
        results.append([out] + [t.grad for t in inputs])
    for ref, got in zip(*results):
        torch.testing.assert_close(got.cpu(), ref, rtol=1e-6, atol=1e-8)

def test_deterministic_training_on_cuda_repeats_exactly(tmp_path):
    """randomness.deterministic=True on the GPU: tools/train.py sets
    CUBLAS_WORKSPACE_CONFIG itself (torch refuses cuBLAS without it), and two
    runs give the same weights."""
    cfg = write_job(tmp_path)
    env = {k: v for k, v in os.environ.items()
           if k != 'CUBLAS_WORKSPACE_CONFIG'}
    env['PYTHONPATH'] = ROOT
    weights = []
    for run in ('a', 'b'):
        work = str(tmp_path / run)
        proc = subprocess.run(
            [sys.executable, osp.join(ROOT, 'tools/train.py'), cfg,
             '--work-dir', work, '--cfg-options', 'train_cfg.max_iters=4',
             'train_cfg.val_interval=4', 'randomness.deterministic=True'],
            cwd=str(tmp_path), env=env, capture_output=True, text=True,
            timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        ckpt = torch.load(osp.join(work, 'iter_4.pth'), map_location='cpu')
        weights.append(ckpt['state_dict'])
    for k, v in weights[0].items():
        assert torch.equal(v, weights[1][k]), k
