"""The mmcv ops the detectors and segmenters use run on the CPU, with the
mmcv that tools/setup_env.sh builds from source: the compiled ones (NMS,
RoIAlign) and multi-scale deformable attention (its PyTorch path)."""
import math

import torch
from mmcv.ops import RoIAlign, nms


def test_nms_hand_checked():
    # boxes 0 and 1 overlap with IoU 81/119 = 0.68, box 2 is disjoint
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.],
                          [20., 20., 30., 30.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    assert torch.allclose(dets[:, 4], torch.tensor([0.9, 0.7]))
    # above the IoU of the pair, nothing is suppressed
    _, keep = nms(boxes, scores, iou_threshold=0.7)
    assert keep.tolist() == [0, 1, 2]


def test_roi_align_hand_checked():
    # a feature map whose value is its x coordinate: bilinear sampling of a
    # linear ramp returns the mean x of each bin exactly
    feat = torch.arange(8.).repeat(8, 1)[None, None]  # (1, 1, 8, 8)
    rois = torch.tensor([[0., 1., 1., 5., 5.]])  # batch idx, x1, y1, x2, y2
    op = RoIAlign(output_size=(2, 2), spatial_scale=1.0, sampling_ratio=2,
                  aligned=False)
    out = op(feat, rois)
    # bins span x in [1, 3] and [3, 5]; their centres are x = 2 and 4
    expected = torch.tensor([[[[2., 4.], [2., 4.]]]])
    assert out.shape == (1, 1, 2, 2)
    assert torch.allclose(out, expected, atol=1e-5)


def _bilinear(img, x, y):
    """Bilinear sample of ``img`` (C, H, W) at pixel coordinates (x, y),
    zeros outside: the hand-written reference."""
    _, h, w = img.shape
    x0, y0 = math.floor(x), math.floor(y)
    out = torch.zeros(img.shape[0], dtype=img.dtype)
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out = out + img[:, yy, xx] * wx * wy
    return out


def test_multi_scale_deformable_attention_on_cpu(monkeypatch):
    """mmcv's MultiScaleDeformableAttention (DINO's encoder and decoder,
    Mask2Former's pixel decoder) runs on the CPU through its PyTorch path,
    never the compiled CUDA function, and samples what the paper's
    definition gives: for each head, the attention-weighted sum over levels
    and points of the level's value map sampled bilinearly at (reference
    point + offset), locations normalised to [0, 1] with pixel centres at
    (i + 0.5) / size."""
    from mmcv.ops import multi_scale_deform_attn as msda
    from mmcv.ops.multi_scale_deform_attn import (
        MultiScaleDeformableAttention,
        multi_scale_deformable_attn_pytorch,
    )

    def no_kernel(*args):
        raise AssertionError('the CUDA function was called on the CPU')

    monkeypatch.setattr(msda.MultiScaleDeformableAttnFunction, 'apply',
                        no_kernel)
    gen = torch.Generator().manual_seed(0)
    shapes = torch.tensor([[3, 5], [2, 3]])  # (H, W) per level, non-square
    bs, heads, dims, queries, points = 2, 2, 3, 4, 2
    levels = len(shapes)
    value = torch.randn(bs, int(shapes.prod(1).sum()), heads, dims,
                        generator=gen)
    # some locations fall outside the map (zeros there)
    loc = torch.rand(bs, queries, heads, levels, points, 2,
                     generator=gen) * 1.4 - 0.2
    weights = torch.rand(bs, queries, heads, levels, points, generator=gen)
    got = multi_scale_deformable_attn_pytorch(value, shapes, loc, weights)
    assert got.shape == (bs, queries, heads * dims)
    starts = [0] + shapes.prod(1).cumsum(0).tolist()
    for b in range(bs):
        for q in range(queries):
            for h in range(heads):
                acc = torch.zeros(dims, dtype=value.dtype)
                for lv, (hh, ww) in enumerate(shapes.tolist()):
                    # (H*W, dims) -> (dims, H, W)
                    img = value[b, starts[lv]:starts[lv + 1], h].t().reshape(
                        dims, hh, ww)
                    for p in range(points):
                        x = loc[b, q, h, lv, p, 0].item() * ww - 0.5
                        y = loc[b, q, h, lv, p, 1].item() * hh - 0.5
                        acc = acc + weights[b, q, h, lv, p] * _bilinear(
                            img, x, y)
                torch.testing.assert_close(
                    got[b, q, h * dims:(h + 1) * dims], acc, rtol=1e-5,
                    atol=1e-6)

    # the module: forward and backward on the CPU, every parameter trained
    attn = MultiScaleDeformableAttention(
        embed_dims=16, num_heads=2, num_levels=2, num_points=2,
        batch_first=True)
    keys = int(shapes.prod(1).sum())
    query = torch.randn(1, queries, 16, generator=gen, requires_grad=True)
    feats = torch.randn(1, keys, 16, generator=gen, requires_grad=True)
    ref_points = torch.rand(1, queries, levels, 2, generator=gen)
    out = attn(query, value=feats, reference_points=ref_points,
               spatial_shapes=shapes,
               level_start_index=torch.tensor(starts[:-1]))
    assert out.shape == (1, queries, 16)
    out.square().sum().backward()
    assert feats.grad.abs().sum() > 0 and query.grad.abs().sum() > 0
    for name, p in attn.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
