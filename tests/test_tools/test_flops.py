"""tools/analysis/get_flops.py: MACs and parameters of a config at any size,
per stage, attention matmuls included."""
import os.path as osp

import pytest

from .tool_module import load_tool

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _tool():
    return load_tool('analysis', 'get_flops.py')


@pytest.mark.parametrize('config,size,gmacs,params', [
    ('cvt/cvt-13_imagenet.py', 224, 4.566, 19_997_480),
    ('cvt/cvt-21_imagenet.py', 224, 7.178, 31_622_696),
    ('cvt/cvt-13_imagenet-384px.py', 384, 16.269, 19_997_480),
    ('cvt/cvt-w24_in21k-pre_in1k-384px.py', 384, 194.22, 277_196_392),
])
def test_known_counts(config, size, gmacs, params, capsys):
    result, = _tool().main([osp.join(ROOT, 'configs', config), '--shape',
                            str(size)])
    assert result['total']['macs'] / 1e9 == pytest.approx(gmacs, abs=6e-3)
    assert result['total']['params'] == params
    # the stages add up to the backbone; the head adds C x 1000
    assert sum(s['macs'] for s in result['stages']) == pytest.approx(
        result['backbone']['macs'])
    assert 'attention GMACs' in capsys.readouterr().out


def test_attention_grows_with_the_square_of_the_tokens():
    small, large = _tool().main([
        osp.join(ROOT, 'configs', 'cvt', 'cvt-13_imagenet.py'), '--shape',
        '224', '--shape', '448'
    ])
    s0, l0 = small['stages'][0], large['stages'][0]
    assert s0['grid'] == (56, 56) and s0['kv_grid'] == (28, 28)
    # 4x the tokens: 16x the query-key pairs, 4x the convs and linears
    assert l0['attention_macs'] == pytest.approx(16 * s0['attention_macs'])
    rest = (l0['macs'] - l0['attention_macs']) / (s0['macs'] -
                                                 s0['attention_macs'])
    assert rest == pytest.approx(4, rel=0.01)


def test_dense_config_counts_the_backbone_at_any_shape():
    result, = _tool().main([
        osp.join(ROOT, 'configs', 'cvt_det',
                 'mask-rcnn_cvt-13_fpn_1x_coco.py'),
        '--shape', '800', '1333'
    ])
    assert [s["grid"] for s in result["stages"]] == [(200, 333), (100, 167),
                                                     (50, 84)]
    assert result['total'] == result['backbone']


def test_cfg_options_override_the_config():
    result, = _tool().main([
        osp.join(ROOT, 'configs', 'cvt', 'cvt-13_imagenet.py'), '--shape',
        '224', '--cfg-options', 'model.backbone.arch=cvt-21'
    ])
    assert result['total']['macs'] / 1e9 == pytest.approx(7.178, abs=6e-3)
