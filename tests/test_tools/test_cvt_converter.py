"""Tests of the CvT checkpoint converters and tools/model_converters/
cvt_to_mmcvt.py."""
import importlib.util
import json
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

from mmcvt.models import CvT
from mmcvt.models.utils import (
    convert_hf_to_mmcvt,
    convert_official_to_mmcvt,
    detect_format,
    infer_arch,
)

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CLI = osp.join(ROOT, 'tools', 'model_converters', 'cvt_to_mmcvt.py')
@pytest.fixture
def hf_arch(tiny_arch):
    """The tiny arch as transformers' CvtStage builds it: depth[i] > i (an
    HF indexing bug), no stochastic depth."""
    return dict(tiny_arch, depths=[1, 2, 3], drop_path_rates=[0., 0., 0.])


pytestmark = pytest.mark.usefixtures('one_torch_thread')


# state_dict() keys and shapes of the official CvT-13 (lib/models/cls_cvt.py;
# written by tests/data/make_official_keys.py)
with open(osp.join(ROOT, 'tests', 'data', 'official_cvt-13_keys.json')) as f:
    OFFICIAL_CVT13 = json.load(f)


def _key_pattern(key):
    return re.sub(r'\d+', '#', key)


OFFICIAL_PATTERNS = {_key_pattern(k) for k in OFFICIAL_CVT13}


def _official_from(model, num_classes=10, seed=0):
    """An official-format state dict (``stage{i}.*``, ``norm``, ``head``) for
    a small arch, built by renaming independently of the code under test; every
    key has the form of a key of the real official model."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            v = torch.randn(v.shape, generator=g)
        sd[re.sub(r'^stages\.(\d+)\.', r'stage\1.', k)] = v
    c = model.embed_dims[-1]
    sd['head.weight'] = torch.randn(num_classes, c, generator=g)
    sd['head.bias'] = torch.randn(num_classes, generator=g)
    unofficial = {_key_pattern(k) for k in sd} - OFFICIAL_PATTERNS
    assert not unofficial, f'not official key forms: {sorted(unofficial)}'
    return sd


def _official_cvt13(seed=0):
    """A state dict with exactly the official CvT-13's keys and shapes."""
    g = torch.Generator().manual_seed(seed)
    return {
        k: torch.tensor(7) if k.endswith('num_batches_tracked') else
        torch.randn(shape, generator=g)
        for k, shape in OFFICIAL_CVT13.items()
    }


def _hf_tiny(arch):
    import transformers
    torch.manual_seed(0)
    config = transformers.CvtConfig(
        embed_dim=arch['embed_dims'],
        num_heads=arch['num_heads'],
        depth=arch['depths'],
        num_labels=10)
    return transformers.CvtForImageClassification(config).eval()


def _run(*args):
    """Run the CLI in a subprocess."""
    return subprocess.run([sys.executable, CLI, *map(str, args)],
                          capture_output=True,
                          text=True,
                          cwd=ROOT)


def _cli_module():
    spec = importlib.util.spec_from_file_location('cvt_to_mmcvt', CLI)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_inproc(capsys, *args):
    """Run the CLI's ``main`` in this process (faster than a subprocess)."""
    code = _cli_module().main([str(a) for a in args])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def _lazy_checkpoint(arch):
    """Official-format state dict of a real arch whose tensors are
    zero-stride views (a few bytes on disk)."""
    with torch.device('meta'):
        model = CvT(arch)
    sd = {}
    for k, v in model.state_dict().items():
        sd[re.sub(r'^stages\.(\d+)\.', r'stage\1.', k)] = torch.zeros(
            (), dtype=v.dtype).expand(v.shape)
    return sd


# ---------------------------------------------------------------------------
# conversion functions
# ---------------------------------------------------------------------------


def test_convert_official_keys(hf_arch):
    model = CvT(hf_arch)
    official = _official_from(model)
    assert detect_format(official) == 'official'
    out = convert_official_to_mmcvt(official)
    assert out['backbone.stages.2.cls_token'] is official['stage2.cls_token']
    assert out['head.fc.weight'] is official['head.weight']
    assert out['backbone.norm.bias'] is official['norm.bias']
    key = 'stages.1.blocks.0.attn.conv_proj_k.bn.running_var'
    assert out['backbone.' + key] is official[key.replace('stages.1',
                                                          'stage1')]
    expected = {'backbone.' + k for k in model.state_dict()}
    assert set(out) == expected | {'head.fc.weight', 'head.fc.bias'}
    # wrapped / DDP-prefixed checkpoints
    wrapped = {'model': {'module.' + k: v for k, v in official.items()}}
    assert list(convert_official_to_mmcvt(wrapped)) == list(out)


def test_convert_hf_keys(hf_arch):
    hf = _hf_tiny(hf_arch)
    sd = hf.state_dict()
    assert detect_format(sd) == 'hf'
    out = convert_hf_to_mmcvt(sd)
    model = CvT(hf_arch)
    expected = {'backbone.' + k for k in model.state_dict()}
    assert set(out) == expected | {'head.fc.weight', 'head.fc.bias'}
    pre = 'cvt.encoder.stages.2.layers.1.attention.attention.'
    assert out['backbone.stages.2.blocks.1.attn.conv_proj_v.bn.running_mean'] \
        is sd[pre + 'convolution_projection_value.convolution_projection.'
              'normalization.running_mean']
    assert out['backbone.stages.2.blocks.1.attn.proj_q.weight'] is \
        sd[pre + 'projection_query.weight']
    assert out['backbone.stages.0.blocks.0.mlp.fc2.bias'] is sd[
        'cvt.encoder.stages.0.layers.0.output.dense.bias']
    assert out['backbone.stages.0.blocks.0.attn.proj.bias'] is sd[
        'cvt.encoder.stages.0.layers.0.attention.output.dense.bias']
    assert out['head.fc.weight'] is sd['classifier.weight']
    assert out['backbone.norm.weight'] is sd['layernorm.weight']
    # CvtModel (no "cvt." prefix, no head)
    base = {k[len('cvt.'):]: v for k, v in sd.items() if k.startswith('cvt.')}
    assert set(convert_hf_to_mmcvt(base)) == expected - {
        'backbone.norm.weight', 'backbone.norm.bias'
    }


def test_convert_errors(hf_arch):
    official = _official_from(CvT(hf_arch))
    with pytest.raises(ValueError, match=r"Unexpected keys.*'foo.bar'"):
        convert_official_to_mmcvt(dict(official, **{'foo.bar': torch.ones(1)}))
    broken = dict(official)
    del broken['stage2.blocks.2.mlp.fc1.weight']
    with pytest.raises(ValueError, match=r'Corrupt or incomplete.*'
                       r'stages\.2\.blocks\.2\.mlp\.fc1\.weight missing'):
        convert_official_to_mmcvt(broken)
    with pytest.raises(ValueError, match='Unrecognised checkpoint'):
        detect_format({'layer1.weight': torch.ones(1)})
    with pytest.raises(ValueError, match='Unexpected keys for a HuggingFace'):
        convert_hf_to_mmcvt({
            'cvt.encoder.stages.0.layers.0.weird.weight': torch.ones(1)
        })


def test_convert_real_official_layout(tmp_path):
    """The official CvT-13's own keys convert to exactly this CvT-13's state
    dict plus the head, and load through init_cfg with every tensor in
    place."""
    official = _official_cvt13()
    assert detect_format(official) == 'official'
    out = convert_official_to_mmcvt(official)
    model = CvT('13')
    assert set(out) == {'backbone.' + k for k in model.state_dict()} | {
        'head.fc.weight', 'head.fc.bias'}
    for k, v in model.state_dict().items():
        assert out['backbone.' + k].shape == v.shape, k
    path = tmp_path / 'CvT-13-224x224-IN-1k.pth'
    torch.save(official, path)
    model = CvT('13', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    for k, v in model.state_dict().items():
        assert torch.equal(v, official[re.sub(r'^stages\.(\d+)\.',
                                              r'stage\1.', k)]), k


def test_infer_arch_of_zoo():
    for name in ('13', '21', 'w24'):
        info = infer_arch(convert_official_to_mmcvt(_lazy_checkpoint(name)))
        assert info['depths'] == CvT.arch_zoo[name]['depths']
        assert info['embed_dims'] == CvT.arch_zoo[name]['embed_dims']
        assert info['cls_token'] == [False, False, True]
        assert info['mlp_ratio'] == [4., 4., 4.]


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


def test_cli_official(hf_arch, tmp_path):
    official = _official_from(CvT(hf_arch))
    src, dst = tmp_path / 'official.pth', tmp_path / 'out.pth'
    torch.save(official, src)
    res = _run(src, dst)
    assert res.returncode == 0, res.stderr
    assert 'detected format: official' in res.stdout
    assert 'custom CvT (depths=[1, 2, 3], embed_dims=[16, 32, 48])' \
        in res.stdout
    ckpt = torch.load(dst, map_location='cpu')
    assert ckpt['meta']['source_format'] == 'official'
    sd = ckpt['state_dict']
    assert len(sd) == len(official)
    for k, v in official.items():
        if k.startswith('stage'):
            new = re.sub(r'^stage(\d+)\.', r'backbone.stages.\1.', k)
        elif k.startswith('head.'):
            new = 'head.fc.' + k[len('head.'):]
        else:
            new = 'backbone.' + k
        torch.testing.assert_close(sd[new], v, rtol=0, atol=0)
    # the result loads into the backbone (mmpretrain prefix) and a wrapper
    model = CvT(hf_arch, init_cfg=dict(type='Pretrained', checkpoint=str(dst),
                                    prefix='backbone.'))
    model.init_weights()
    torch.testing.assert_close(model.stages[1].blocks[0].attn.proj_k.weight,
                               official['stage1.blocks.0.attn.proj_k.weight'])


def test_cli_hf_and_wrapped(hf_arch, tmp_path, capsys):
    hf = _hf_tiny(hf_arch)
    sd = hf.state_dict()
    src, dst = tmp_path / 'pytorch_model.bin', tmp_path / 'out.pth'
    torch.save({'state_dict': sd}, src)
    res = _run_inproc(capsys, src, dst)
    assert res.returncode == 0, res.stderr
    assert 'detected format: hf' in res.stdout
    out = torch.load(dst, map_location='cpu')['state_dict']
    torch.testing.assert_close(
        out['backbone.stages.2.cls_token'],
        sd['cvt.encoder.stages.2.cls_token'],
        rtol=0,
        atol=0)
    torch.testing.assert_close(
        out['backbone.stages.1.blocks.0.attn.conv_proj_q.conv.weight'],
        sd['cvt.encoder.stages.1.layers.0.attention.attention.'
           'convolution_projection_query.convolution_projection.convolution.'
           'weight'], rtol=0, atol=0)
    assert len(out) == len(sd)


def test_cli_corrupt_file(hf_arch, tmp_path, capsys):
    src = tmp_path / 'broken.pth'
    src.write_bytes(b'this is not a checkpoint' * 10)
    res = _run(src, tmp_path / 'out.pth')
    assert res.returncode != 0
    assert 'corrupt or not a torch file' in res.stderr
    assert not (tmp_path / 'out.pth').exists()
    # missing file / unknown keys
    res = _run_inproc(capsys, tmp_path / 'nope.pth', tmp_path / 'out.pth')
    assert res.returncode != 0 and 'No such checkpoint file' in res.stderr
    torch.save({'layer1.weight': torch.ones(1)}, src)
    res = _run_inproc(capsys, src, tmp_path / 'out.pth')
    assert res.returncode != 0 and 'Unrecognised checkpoint' in res.stderr
    # truncated real checkpoint
    torch.save(_official_from(CvT(hf_arch)), src)
    data = src.read_bytes()
    src.write_bytes(data[:len(data) // 2])
    res = _run_inproc(capsys, src, tmp_path / 'out.pth')
    assert res.returncode != 0 and 'corrupt' in res.stderr
    assert not (tmp_path / 'out.pth').exists()


def test_cli_wrong_variant(tmp_path, capsys):
    src = tmp_path / 'cvt21.pth'
    torch.save(_lazy_checkpoint('21'), src)
    assert src.stat().st_size < 2_000_000
    res = _run(src, tmp_path / 'out.pth', '--arch', '13')
    assert res.returncode != 0
    assert 'not a CvT-13 checkpoint: it looks like CvT-21' in res.stderr
    res = _run_inproc(capsys, src, tmp_path / 'out.pth', '--arch', '21')
    assert res.returncode == 0, res.stderr
    assert 'detected variant: CvT-21' in res.stdout


# ---------------------------------------------------------------------------
# loading official / HF checkpoints directly into the backbone
# ---------------------------------------------------------------------------


def test_pretrained_official_file(hf_arch, tmp_path):
    official = _official_from(CvT(hf_arch))
    path = tmp_path / 'official.pth'
    torch.save(official, path)
    model = CvT(hf_arch,
                init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    for key in ('stage2.cls_token', 'stage0.patch_embed.proj.weight',
                'stage2.blocks.1.attn.conv_proj_q.bn.running_mean',
                'norm.weight'):
        new = re.sub(r'^stage(\d+)\.', r'stages.\1.', key)
        torch.testing.assert_close(model.state_dict()[new], official[key])


def test_load_hf_state_dict_directly(hf_arch):
    hf = _hf_tiny(hf_arch)
    model = CvT(hf_arch)
    result = model.load_state_dict(hf.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    torch.testing.assert_close(
        model.stages[0].patch_embed.norm.bias,
        hf.state_dict()['cvt.encoder.stages.0.embedding.'
                        'convolution_embeddings.normalization.bias'])


def test_load_wrong_variant_names_it(hf_arch, tmp_path):
    path = tmp_path / 'cvt21.pth'
    torch.save(_lazy_checkpoint('21'), path)
    model = CvT('13', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(ValueError, match=r'does not match this CvT-13 .*'
                       r'looks like CvT-21 \(arch="21"\)'):
        model.init_weights()
    with pytest.raises(ValueError, match=r'looks like CvT-W24'):
        model.load_state_dict(_lazy_checkpoint('w24'), strict=False)
    with pytest.raises(ValueError, match=r'looks like a custom CvT'):
        CvT(hf_arch).load_state_dict(
            {'stages.0.patch_embed.proj.weight': torch.zeros(8, 3, 7, 7)},
            strict=False)


def test_load_reports_missing_and_unexpected_keys(hf_arch):
    model = CvT(hf_arch)
    sd = model.state_dict()
    del sd['stages.1.blocks.0.norm2.bias']
    sd['stages.1.blocks.0.extra'] = torch.ones(1)
    result = model.load_state_dict(sd, strict=False)
    assert result.missing_keys == ['stages.1.blocks.0.norm2.bias']
    assert result.unexpected_keys == ['stages.1.blocks.0.extra']
    with pytest.raises(ValueError, match='Unrecognised CvT checkpoint'):
        model.load_state_dict({'layer1.weight': torch.ones(1)})
