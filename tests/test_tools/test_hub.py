"""Pretrained weights in one line: ``hf://`` hub checkpoints and safetensors
files through mmengine's CheckpointLoader, every config family's
``init_cfg``, ``tools/test.py``, and mmcvt's models by name in mmpretrain.

No network: a local hub on 127.0.0.1 (local_hub.py) serves
checkpoints that ``transformers`` wrote for seeded random models, at
``HF_ENDPOINT``, into a fresh ``huggingface_hub`` cache.
"""
import os
import os.path as osp
import re
import subprocess
import sys

import mmengine
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import CheckpointLoader
from safetensors.torch import save_file

import mmcvt  # noqa: F401  (registers the hf:// scheme and the models)
from mmcvt.models import CvT
from mmcvt.models.layers import QuickGELU
from mmcvt.models.utils import convert_hf_to_mmcvt
from .local_hub import LocalHub, hf_cvt_model

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(ROOT, 'configs')
TINY_HF = dict(embed_dim=[16, 32, 48], num_heads=[1, 2, 3], depth=[1, 2, 3])

pytestmark = pytest.mark.usefixtures('one_torch_thread')


def _official(converted):
    """The official layout of an mmpretrain-layout CvT state dict, renamed
    independently of the code under test."""
    out = {}
    for k, v in converted.items():
        k = re.sub(r'^backbone\.stages\.(\d+)\.', r'stage\1.', k)
        k = k.replace('backbone.norm.', 'norm.').replace('head.fc.', 'head.')
        out[k] = v
    return out


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    """CvT-13 (default CvtConfig) and a tiny CvT written by transformers in
    every layout; ``source`` is the mmpretrain layout they all hold."""
    tmp = tmp_path_factory.mktemp('weights')
    hf13 = hf_cvt_model(0, num_labels=1000)  # CvtConfig() is CvT-13
    sd = {k: v.contiguous() for k, v in hf13.state_dict().items()}
    source = convert_hf_to_mmcvt(sd)
    files = dict(
        bin=str(tmp / 'pytorch_model.bin'),
        safetensors=str(tmp / 'model.safetensors'),
        official=str(tmp / 'CvT-13-224x224-IN-1k.pth'),
        backbone=str(tmp / 'backbone.pth'),
        classifier=str(tmp / 'classifier.pth'))
    torch.save(sd, files['bin'])
    save_file(sd, files['safetensors'])
    torch.save(_official(source), files['official'])
    torch.save({
        k[len('backbone.'):]: v
        for k, v in source.items() if k.startswith('backbone.')
    }, files['backbone'])
    torch.save({'state_dict': source, 'meta': {}}, files['classifier'])
    tiny = str(tmp / 'tiny.safetensors')
    save_file(hf_cvt_model(1, **TINY_HF).state_dict(), tiny)
    foreign = str(tmp / 'foreign.safetensors')
    save_file({'conv1.weight': torch.ones(8, 3, 3, 3)}, foreign)
    return dict(hf=hf13, source=source, files=files, tiny=tiny,
                foreign=foreign)


@pytest.fixture
def hub(weights, tmp_path, monkeypatch):
    """The local hub at HF_ENDPOINT, with an empty cache."""
    f = weights['files']
    repos = {
        'microsoft/cvt-13': {
            'model.safetensors': f['safetensors'],
            'pytorch_model.bin': f['bin']
        },
        'microsoft/cvt-13-384-22k': {'pytorch_model.bin': f['bin']},
        'test/tiny-cvt': {'model.safetensors': weights['tiny']},
        'test/not-cvt': {'model.safetensors': weights['foreign']},
    }
    with LocalHub(repos) as server:
        monkeypatch.setenv('HF_ENDPOINT', server.endpoint)
        monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path / 'hub-cache'))
        monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
        yield server


def _backbone_equals_source(backbone, source):
    """Every backbone tensor equals the checkpoint's; only the dense
    configs' new output norms are not in it."""
    for k, v in backbone.state_dict().items():
        if k.startswith('out_norm'):
            assert 'backbone.' + k not in source
            continue
        assert torch.equal(v, source['backbone.' + k]), k


# ---------------------------------------------------------------------------
# the hf:// scheme and local safetensors files
# ---------------------------------------------------------------------------


def test_hf_scheme_prefers_safetensors_and_caches(hub, weights,
                                                  monkeypatch):
    ckpt = CheckpointLoader.load_checkpoint('hf://microsoft/cvt-13')
    assert set(ckpt) == set(weights['source'])  # converted on the fly
    for k, v in weights['source'].items():
        assert torch.equal(ckpt[k], v), k
    assert hub.downloads('model.safetensors') == 1
    assert hub.downloads('pytorch_model.bin') == 0
    # a named file; a repo with the .bin only
    CheckpointLoader.load_checkpoint('hf://microsoft/cvt-13/pytorch_model.bin')
    CheckpointLoader.load_checkpoint('hf://microsoft/cvt-13-384-22k@main')
    assert hub.downloads('pytorch_model.bin') == 2
    # offline: from the cache, the hub is not asked again
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    n = len(hub.requests)
    again = CheckpointLoader.load_checkpoint('hf://microsoft/cvt-13')
    assert len(hub.requests) == n
    assert torch.equal(again['head.fc.weight'],
                       weights['source']['head.fc.weight'])


def test_local_safetensors_file(weights):
    ckpt = CheckpointLoader.load_checkpoint(weights['files']['safetensors'])
    assert torch.equal(ckpt['backbone.stages.2.cls_token'],
                       weights['source']['backbone.stages.2.cls_token'])


@pytest.mark.parametrize('url,error,match', [
    ('hf://microsoft/cvt-99', FileNotFoundError,
     r'hf://microsoft/cvt-99: no repository "microsoft/cvt-99" on '
     r'http://127\.0\.0\.1:\d+'),
    ('hf://microsoft/cvt-13/nothing.bin', FileNotFoundError,
     r'"microsoft/cvt-13" has no nothing\.bin'),
    ('hf://microsoft/cvt-13@v9', FileNotFoundError, r'no revision "v9"'),
    ('hf://cvt-13', ValueError, r'hf://owner/repo\[/file\]'),
])
def test_hub_errors(hub, url, error, match):
    with pytest.raises(error, match=match):
        CheckpointLoader.load_checkpoint(url)


def test_no_network_and_no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path / 'empty-cache'))
    monkeypatch.setenv('HF_ENDPOINT', 'http://127.0.0.1:9')  # nobody there
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
    with pytest.raises(ConnectionError,
                       match=r'http://127\.0\.0\.1:9 cannot be reached and '
                       r'the cache .* has no copy .*HF_ENDPOINT'):
        CheckpointLoader.load_checkpoint('hf://microsoft/cvt-13')
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    with pytest.raises(ConnectionError, match='HF_HUB_OFFLINE is set'):
        CheckpointLoader.load_checkpoint('hf://microsoft/cvt-13')


def test_other_variant_and_foreign_keys_are_named(hub):
    model = CvT('13', init_cfg=dict(
        type='Pretrained', checkpoint='hf://test/tiny-cvt'))
    with pytest.raises(ValueError, match=r'^hf://test/tiny-cvt: Checkpoint '
                       r'does not match this CvT-13 backbone.*custom CvT.*'
                       'matching arch'):
        model.init_weights()
    model = CvT('13', init_cfg=dict(
        type='Pretrained', checkpoint='hf://test/not-cvt'))
    with pytest.raises(ValueError, match=r'^hf://test/not-cvt: Unrecognised '
                       r"CvT checkpoint.*'conv1\.weight'"):
        model.init_weights()


# ---------------------------------------------------------------------------
# every config family's init_cfg, every layout
# ---------------------------------------------------------------------------

FAMILY_CONFIGS = {
    'imagenet': 'cvt/cvt-13_imagenet.py',
    'in22k-pre': 'cvt/cvt-13_in21k-pre_in1k-384px.py',
    'transfer': 'cvt_transfer/cvt-13_in21k-pre_cifar10-384px.py',
    'det': 'cvt_det/mask-rcnn_cvt-13_fpn_1x_coco.py',
    'seg': 'cvt_seg/cvt-13-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',
}


@pytest.mark.parametrize('layout', [
    'official', 'bin', 'safetensors', 'backbone', 'classifier', 'hf://'
])
@pytest.mark.parametrize('family', list(FAMILY_CONFIGS))
def test_config_init_cfg_loads_every_layout(family, layout, weights, hub):
    cfg = Config.fromfile(osp.join(CONFIGS, FAMILY_CONFIGS[family]))
    backbone_cfg = cfg.model.backbone
    init_cfg = backbone_cfg.get('init_cfg') or dict(type='Pretrained')
    if family != 'imagenet':  # the configs' own default: the hub model
        assert init_cfg.checkpoint.startswith('hf://microsoft/cvt-13')
    checkpoint = ('hf://microsoft/cvt-13'
                  if layout == 'hf://' else weights['files'][layout])
    backbone_cfg.init_cfg = dict(init_cfg, checkpoint=checkpoint)
    from mmengine.registry import MODELS, DefaultScope
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        backbone = MODELS.build(backbone_cfg)
    backbone.init_weights()
    _backbone_equals_source(backbone, weights['source'])


@pytest.mark.parametrize('config,repo', [
    ('_base_/models/cvt-w24_ft.py', 'cvt-w24-384-22k'),
    ('_base_/models/cvt-21_ft.py', 'cvt-21-384-22k'),
    ('cvt/cvt-w24_in21k-pre_in1k-384px.py', 'cvt-w24-384-22k'),
    ('cvt_transfer/cvt-w24_in21k-pre_flowers102-384px.py', 'cvt-w24-384-22k'),
    ('cvt_det/retinanet_cvt-21_fpn_1x_coco.py', 'cvt-21'),
    ('cvt_seg/cvt-21-in1k-pre_fpn_8xb4-80k_ade20k-512x512.py', 'cvt-21'),
    ('cvt_det/cascade-mask-rcnn_cvt-21_fpn_ms-crop-3x_coco.py', 'cvt-21'),
    ('cvt_det/dino-4scale_cvt-21_8xb2-12e_coco.py', 'cvt-21'),
    ('cvt_seg/mask2former_cvt-21_8xb2-160k_ade20k-512x512.py',
     'cvt-21'),
])
def test_other_variants_default_to_their_hub_model(config, repo):
    backbone = Config.fromfile(osp.join(CONFIGS, config)).model.backbone
    assert backbone.init_cfg.checkpoint == f'hf://microsoft/{repo}'
    assert backbone.arch == repo.split('-')[1]


# ---------------------------------------------------------------------------
# models by name (mmpretrain) and tools/test.py
# ---------------------------------------------------------------------------


def test_get_model_by_name_matches_transformers(hub, weights):
    """The model-index names work with mmpretrain's own APIs; the logits
    equal transformers' on the same file (QuickGELU swapped in)."""
    from mmpretrain import (
        FeatureExtractor,
        ImageClassificationInferencer,
        get_model,
        inference_model,
        list_models,
    )
    assert 'cvt-13_in1k' in list_models('cvt*')
    model = get_model('cvt-13_in1k', pretrained=True).eval()
    ref = weights['hf']
    for m in ref.modules():
        if type(m).__name__ == 'CvtIntermediate':
            m.activation = QuickGELU()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got = model(x, mode='tensor')
        want = ref(pixel_values=x).logits
    diff = (got - want).abs().max().item()
    assert diff < 1e-5, diff

    image = np.random.default_rng(0).integers(0, 255, (200, 260, 3),
                                              dtype=np.uint8)
    # mmpretrain's inferencers build their pipelines in the current default
    # scope: the one of a fresh mmpretrain session, whatever earlier tests
    # of this process (mmdet, mmseg) left
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        result = inference_model('cvt-13_in1k', image)
        assert len(result['pred_scores']) == 1000
        inferencer = ImageClassificationInferencer('cvt-13_in1k')
        assert len(inferencer(image)[0]['pred_scores']) == 1000
        feats = FeatureExtractor('cvt-13_in1k')(image)[0]
        assert feats[-1].shape == (384, )


def test_tools_test_reads_hub_checkpoints(tmp_path, hub):
    """``tools/test.py CONFIG hf://...`` evaluates the hub file: the same
    predictions as from the local file."""
    from test_foundation.tiny_classification import write_job
    cfg_path = write_job(tmp_path)
    cfg = Config.fromfile(cfg_path)
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS
    torch.manual_seed(5)
    model = MODELS.build(cfg.model)
    model.init_weights()
    local = str(tmp_path / 'pytorch_model.bin')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, local)
    hub.repos['test/tiny-cls'] = {'pytorch_model.bin': local}
    outs = []
    for ckpt in (local, 'hf://test/tiny-cls'):
        out = str(tmp_path / f'{len(outs)}.pkl')
        res = subprocess.run([
            sys.executable, 'tools/test.py', cfg_path, ckpt, '--out', out,
            '--work-dir', str(tmp_path / 'work')
        ],
                             cwd=ROOT,
                             capture_output=True,
                             text=True,
                             env=dict(os.environ))
        assert res.returncode == 0, res.stderr[-3000:]
        outs.append(mmengine.load(out))
    scores = [[s['pred_score'] for s in o] for o in outs]
    for a, b in zip(*scores):
        assert torch.equal(a, b)


@pytest.mark.parametrize('src,dst', [('safetensors', 'out.safetensors'),
                                     ('hf://', 'out.pth')])
def test_converter_reads_and_writes_safetensors_and_hub(
        src, dst, weights, hub, tmp_path):
    from mmcvt.checkpoint import read_file
    src = ('hf://microsoft/cvt-13'
           if src == 'hf://' else weights['files']['safetensors'])
    out = str(tmp_path / dst)
    res = subprocess.run([
        sys.executable, 'tools/model_converters/cvt_to_mmcvt.py', src, out,
        '--arch', '13'
    ],
                         cwd=ROOT,
                         capture_output=True,
                         text=True,
                         env=dict(os.environ))
    assert res.returncode == 0, res.stderr
    assert 'detected format: hf' in res.stdout
    converted = read_file(out)
    converted = converted.get('state_dict', converted)
    assert set(converted) == set(weights['source'])
    for k, v in weights['source'].items():
        assert torch.equal(converted[k], v), k


@pytest.mark.parametrize('order', ['mmcvt first', 'mmpretrain first'])
def test_models_by_name_whatever_the_import_order(order):
    """mmcvt's names reach mmpretrain's ModelHub whether mmpretrain is
    imported after mmcvt (import hook) or before; ``import mmcvt`` itself
    does not import mmpretrain."""
    first = ('import mmcvt, sys; assert "mmpretrain" not in sys.modules; '
             'import mmpretrain.apis' if order == 'mmcvt first' else
             'import mmpretrain.apis; import mmcvt')
    code = (f'{first}; from mmpretrain import list_models; '
            'names = list_models("cvt-*"); '
            'assert "cvt-13_in1k" in names and '
            '"cvt-w24_in21k-pre_in1k-384px" in names, names')
    subprocess.run([sys.executable, '-c', code], check=True, cwd=ROOT)
