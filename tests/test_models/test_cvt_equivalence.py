"""Numerical equivalence with HuggingFace ``transformers``' CvT.

A randomly initialised ``CvtForImageClassification`` (its GELU swapped for
the official QuickGELU, BatchNorm statistics randomised) is converted with
``convert_hf_to_mmcvt`` and loaded into an mmpretrain-free wrapper
(``CvT`` backbone + a ``Linear`` head applied by hand).
"""
import pytest
import torch
import torch.nn as nn

# a pinned test dependency: imported plainly, so a broken install fails
import transformers

from mmcvt.models import CvT
from mmcvt.models.layers import QuickGELU
from mmcvt.models.utils import convert_hf_to_mmcvt

TOL = 1e-5


pytestmark = pytest.mark.usefixtures('one_torch_thread')


class Classifier(nn.Module):
    """Backbone + Linear head, the mmpretrain ImageClassifier layout."""

    def __init__(self, arch, num_classes=1000, **kwargs):
        super().__init__()
        self.backbone = CvT(arch, **kwargs)
        self.head = nn.Module()
        self.head.fc = nn.Linear(self.backbone.embed_dims[-1], num_classes)

    def forward(self, x):
        return self.head.fc(self.backbone(x)[-1])


def _hf_model(depth, seed=0):
    torch.manual_seed(seed)
    config = transformers.CvtConfig(depth=depth, num_labels=1000)
    model = transformers.CvtForImageClassification(config).eval()
    # the official models use QuickGELU; HF hard-codes nn.GELU
    for module in model.modules():
        for name, child in list(module.named_children()):
            if isinstance(child, nn.GELU):
                setattr(module, name, QuickGELU())
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * .5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + .5)
                m.weight.copy_(1 + .2 * torch.randn(n, generator=g))
                m.bias.copy_(.2 * torch.randn(n, generator=g))
            elif isinstance(m, nn.LayerNorm):
                m.weight.copy_(1 + .1 * torch.randn(m.weight.shape,
                                                    generator=g))
                m.bias.copy_(.1 * torch.randn(m.bias.shape, generator=g))
    return model


SIZES = {'224': (224, 224), '160x224': (160, 224)}


CVT13 = ('13', [1, 2, 10])
CVT21 = ('21', [1, 4, 16])


@pytest.fixture(
    scope='module', params=[CVT13, CVT21], ids=['cvt-13', 'cvt-21'])
def pair(request):
    arch, depth = request.param
    hf = _hf_model(depth)
    ours = Classifier(arch, out_indices=(0, 1, 2)).eval()
    converted = convert_hf_to_mmcvt(hf.state_dict())
    result = ours.load_state_dict(converted, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return dict(arch=arch, hf=hf, ours=ours, ref={})


def _input(size):
    batch = 2 if size == '224' else 1  # batch 1 too (official squeeze bug)
    return torch.randn(batch, 3, *SIZES[size],
                       generator=torch.Generator().manual_seed(3))


def _hf_outputs(pair, size):
    if size not in pair['ref']:
        with torch.no_grad():
            pair['ref'][size] = pair['hf'](
                _input(size), output_hidden_states=True)
    return pair['ref'][size]


@pytest.mark.parametrize('size', list(SIZES))
def test_logits_and_stage_features_match_hf(pair, size):
    arch, ours = pair['arch'], pair['ours']
    ref = _hf_outputs(pair, size)
    tokens = []
    hook = ours.backbone.stages[2].register_forward_hook(
        lambda m, i, o: tokens.append(o))
    try:
        with torch.no_grad():
            feats = ours.backbone(_input(size))
            logits = ours.head.fc(feats[-1])
    finally:
        hook.remove()
    diff = (logits - ref.logits).abs().max().item()
    assert diff < TOL, f'CvT-{arch} {size}: logits max-abs diff {diff:.2e}'
    # stage feature maps: HF hidden_states are the raw (B, C, H, W) maps;
    # stage 2 comes from the stage's tokens (class token dropped)
    x2, hw = tokens[0]
    map2 = x2[:, 1:].transpose(1, 2).reshape(x2.shape[0], -1, *hw)
    for i, (a, b) in enumerate(zip([feats[0], feats[1], map2],
                                   ref.hidden_states)):
        assert a.shape == b.shape
        diff = (a - b).abs().max().item()
        assert diff < TOL, f'stage {i} max-abs diff {diff:.2e}'


@pytest.mark.parametrize('pair', [CVT13], indirect=True, ids=['cvt-13'])
def test_featmap_out_type_matches_hf_last_stage(pair):
    ref = _hf_outputs(pair, '160x224')
    featmap = CvT('13', out_indices=(2, ), out_type='featmap').eval()
    featmap.load_state_dict(pair['ours'].backbone.state_dict(), strict=False)
    with torch.no_grad():
        out = featmap(_input('160x224'))[0]
    assert (out - ref.hidden_states[2]).abs().max() < TOL


@pytest.mark.parametrize('pair', [CVT13], indirect=True, ids=['cvt-13'])
def test_hf_keys_load_directly_and_deploy_matches(pair):
    """HF-format keys are converted on the fly by ``load_state_dict``, and
    the BN-folded deploy model gives the same logits."""
    arch, hf, ours = pair['arch'], pair['hf'], pair['ours']
    ref = _hf_outputs(pair, '224').logits
    backbone = CvT(arch).eval()
    backbone.load_state_dict(hf.state_dict(), strict=False)
    with torch.no_grad():
        logits = ours.head.fc(backbone(_input('224'))[0])
        diff = (logits - ref).abs().max().item()
        assert diff < TOL, diff
        backbone.switch_to_deploy()
        logits = ours.head.fc(backbone(_input('224'))[0])
        diff = (logits - ref).abs().max().item()
        assert diff < TOL, diff
