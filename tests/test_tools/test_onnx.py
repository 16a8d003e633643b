"""tools/deployment/pytorch2onnx.py: the deploy form (BatchNorm folded)
exported with dynamic batch / height / width, equal to PyTorch in
onnxruntime at two other input sizes."""
import os.path as osp

import onnx
import pytest

from .tool_module import load_tool

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(ROOT, 'configs', 'demo', 'cvt-tiny_digits.py')


def _tool():
    return load_tool('deployment', 'pytorch2onnx.py')


@pytest.mark.parametrize('backbone_only,outputs', [(False, 1),
                                                   (True, 3)])
def test_export_matches_pytorch_at_other_sizes(backbone_only, outputs,
                                               tmp_path):
    out = str(tmp_path / 'model.onnx')
    # exported at 64x64 (at 32x32 the demo CvT's last stage has one key
    # position, see the next test), checked at 32x32 and 48x40
    argv = [DEMO, '--out', out, '--shape', '64', '64', '--check-shapes',
            '1', '32', '32', '3', '48', '40']
    if backbone_only:
        argv.append('--backbone-only')
    diffs = _tool().main(argv)
    assert len(diffs) == 2 and max(diffs) <= 1e-4
    graph = onnx.load(out).graph
    assert len(graph.output) == outputs
    dims = graph.input[0].type.tensor_type.shape.dim
    assert [bool(d.dim_param) for d in dims] == [True, False, True, True]
    ops = {n.op_type for n in graph.node}
    assert 'BatchNormalization' not in ops  # folded into the convolutions


def test_export_shape_with_one_wide_grid_is_refused(tmp_path):
    """At 32x32 the demo CvT's last stage is a 2x2 token grid with 1x1 keys:
    torch.export would make the size static; the tool says so first."""
    with pytest.raises(ValueError, match='stage 3 a 2x2 token grid with 1x1 '
                       r'keys.*\(e.g. 64 64\)'):
        _tool().main([DEMO, '--out', str(tmp_path / 'm.onnx'), '--shape',
                      '32', '32'])
    assert not (tmp_path / 'm.onnx').exists()
