"""The compiled mmcv ops (built from source by tools/setup_env.sh) run on
CPU."""
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
