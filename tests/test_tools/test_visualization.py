"""tools/visualization/vis_attention.py and mmcvt/utils/visualization.py:
attention maps read through hooks are the layer's own softmax(q k^T scale),
and the pictures come out at the image's size."""
import os.path as osp

import numpy as np
import pytest
import torch
from PIL import Image

import mmcvt  # noqa: F401
from mmcvt.models import CvT
from mmcvt.utils import visualization as vis
from .tool_module import load_tool

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(ROOT, 'configs', 'demo', 'cvt-tiny_digits.py')

pytestmark = pytest.mark.usefixtures('one_torch_thread')


def _explicit_attention(attn, x, hw):
    """softmax(q k^T * scale) from the layer's own modules, step by step."""
    cls, tokens = (x[:, :1], x[:, 1:]) if attn.with_cls_token else (None, x)
    grid = tokens.transpose(1, 2).reshape(x.shape[0], -1, *hw)

    def project(conv, linear):
        t = grid if conv is None else conv(grid)
        t = t.flatten(2).transpose(1, 2)
        if cls is not None:
            t = torch.cat([cls, t], 1)
        t = linear(t)
        return t.reshape(t.shape[0], t.shape[1], attn.num_heads,
                         -1).transpose(1, 2)

    q = project(attn.conv_proj_q, attn.proj_q)
    k = project(attn.conv_proj_k, attn.proj_k)
    return torch.softmax(q @ k.transpose(-1, -2) * attn.embed_dims**-0.5, -1)


def test_attention_maps_are_the_layers_softmax(tiny_arch):
    torch.manual_seed(0)
    model = CvT(tiny_arch).eval()
    model.init_weights()
    x = torch.randn(2, 3, 72, 56)
    inputs = {}
    handles = [
        s.blocks[-1].attn.register_forward_hook(
            lambda m, a, o, i=i: inputs.setdefault(i, a) and None)
        for i, s in enumerate(model.stages)
    ]
    infos = vis.attention_maps(model, x)
    for h in handles:
        h.remove()
    assert [(m['stage'], m['block']) for m in infos] == [(0, 0), (1, 0),
                                                          (2, 0), (2, 1)]
    for info in infos:
        a = info['attn']
        kh, kw = info['kv_grid']
        assert a.shape[-1] == info['extra'] + kh * kw
        torch.testing.assert_close(a.sum(-1), torch.ones_like(a[..., 0]))
    for i, stage in enumerate(model.stages):
        last = [m for m in infos if m['stage'] == i][-1]
        xin, hw = inputs[i][:2]  # (tokens, hw_shape, plan)
        with torch.no_grad():
            want = _explicit_attention(stage.blocks[-1].attn, xin, hw)
        torch.testing.assert_close(last['attn'], want, rtol=1e-5, atol=1e-6)
    cls = vis.cls_token_attention(infos[-1])
    assert cls.shape == (2, 3) + infos[-1]['kv_grid']
    with pytest.raises(ValueError, match='no class token'):
        vis.cls_token_attention(infos[0])
    q = vis.query_attention(infos[0], 0.5, 0.25)
    assert q.shape == (2, 1) + infos[0]['kv_grid']


def _tool():
    return load_tool('visualization', 'vis_attention.py')


@pytest.fixture(scope='module')
def demo_checkpoint(tmp_path_factory):
    """The demo classifier (random weights) saved as a checkpoint."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope
    path = str(tmp_path_factory.mktemp('vis') / 'demo.pth')
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(Config.fromfile(DEMO).model)
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


@pytest.fixture(scope='module')
def photo(tmp_path_factory):
    """A real photograph that scikit-learn ships, 427x640."""
    from sklearn.datasets import load_sample_images
    path = str(tmp_path_factory.mktemp('photo') / 'china.jpg')
    Image.fromarray(load_sample_images().images[0]).save(path)
    return path


@pytest.mark.parametrize('extra,panels', [
    ([], 2 + 4),  # image, mean, 4 heads of the demo's last stage
    (['--stage', '0', '--query', '0.5', '0.5'], 2 + 1),
    (['--features'], 1 + 3),
])
def test_pictures_have_the_image_size(extra, panels, demo_checkpoint, photo,
                                      tmp_path):
    out = str(tmp_path / 'pic.png')
    _tool().main(
        [DEMO, demo_checkpoint, photo, '--out', out, '--max-size', '160'] +
        extra)
    w, h = Image.open(out).size
    assert (h, w) == (107, 160 * panels)  # 427x640 scaled to 160 wide


def test_overlay_and_pca():
    image = np.zeros((30, 40, 3), np.uint8)
    heat = torch.zeros(3, 4)
    heat[1, 2] = 1
    out = vis.overlay(image, heat)
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    pca = vis.feature_pca(torch.randn(8, 5, 6))
    assert pca.shape == (5, 6, 3) and pca.min() == 0 and pca.max() == 255


class _DeviceTensor(torch.Tensor):
    """A tensor that, as a CUDA one does, refuses ``numpy()`` until it is
    copied to the host with ``cpu()``."""

    def numpy(self, *args, **kwargs):
        raise TypeError("can't convert cuda:0 device type tensor to numpy. "
                        'Use Tensor.cpu() to copy the tensor to host memory '
                        'first.')

    def cpu(self, *args, **kwargs):
        return torch.Tensor.cpu(self).as_subclass(torch.Tensor)


def test_pictures_of_device_tensors():
    """Maps and features computed on a GPU draw as those on the CPU (they
    are copied to the host before numpy reads them)."""
    image = np.zeros((30, 40, 3), np.uint8)
    heat = torch.rand(3, 4)
    feat = torch.randn(8, 5, 6)
    np.testing.assert_array_equal(
        vis.overlay(image, heat.as_subclass(_DeviceTensor)),
        vis.overlay(image, heat))
    np.testing.assert_array_equal(
        vis.feature_pca(feat.as_subclass(_DeviceTensor)),
        vis.feature_pca(feat))


@pytest.mark.cuda
def test_vis_attention_on_cuda(demo_checkpoint, photo, tmp_path):
    outs = {}
    for device in ('cpu', 'cuda'):
        outs[device] = str(tmp_path / f'{device}.png')
        _tool().main([DEMO, demo_checkpoint, photo, '--out', outs[device],
                      '--max-size', '160', '--device', device])
    a = np.asarray(Image.open(outs['cpu']), np.int16)
    b = np.asarray(Image.open(outs['cuda']), np.int16)
    assert a.shape == b.shape
    assert np.abs(a - b).max() <= 2  # TF32 / kernel rounding, in 0-255


def test_mmpretrain_vis_cam_works_on_cvt(demo_checkpoint, tmp_path):
    """mmpretrain's own vis_cam.py: ``--vit-like`` drops the class token
    (``CvT.num_extra_tokens``) and restores the last stage's grid."""
    import subprocess
    import sys

    import mmpretrain
    from sklearn.datasets import load_digits
    tool = osp.join(
        osp.dirname(mmpretrain.__file__), '.mim', 'tools', 'visualization',
        'vis_cam.py')
    digit = (load_digits().images[0] * 255 / 16).astype(np.uint8)
    img = str(tmp_path / 'digit.png')
    Image.fromarray(digit).resize((32, 32)).convert('RGB').save(img)
    out = str(tmp_path / 'cam.png')
    res = subprocess.run([
        sys.executable, tool, img, DEMO, demo_checkpoint, '--vit-like',
        '--target-layers', 'backbone.stages.2.blocks.1.norm1', '--save-path',
        out
    ],
                         capture_output=True,
                         text=True,
                         cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    assert Image.open(out).size == (32, 32)
