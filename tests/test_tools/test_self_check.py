"""tools/analysis/self_check.py, the hardware self-check, on the CPU (and on
a GPU where one is present): every section runs and reports, a fast path
that computes something else fails the check, and the command line writes
its JSON and exits 1 on a failure. No timing assertions."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

# a pinned test dependency: imported plainly, so a broken install fails
import transformers  # noqa: F401

from mmcvt.models.layers import fast_paths as fp
from mmcvt.models.layers import kernels
from mmcvt.utils import self_check
from .tool_module import load_tool

pytestmark = pytest.mark.usefixtures('one_torch_thread')


@pytest.fixture(scope='module')
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp('self_check')
    return self_check.run('cpu', quick=True, json_dir=str(out),
                          log=lambda line: None)


def test_every_section_reports(quick_report):
    checks = quick_report['checks']
    assert list(checks) == list(self_check.SECTIONS)
    assert quick_report['passed'], checks
    assert quick_report['environment']['device'] == 'cpu'
    import mmcv.ops  # either flavour: CPU ops, or CUDA ops too
    assert quick_report['environment']['mmcv_ops_cuda'] == \
        mmcv.ops.get_compiling_cuda_version()


def test_fast_paths_match_the_reference_in_every_dtype(quick_report):
    rows = quick_report['checks']['fast_paths']
    assert [r['dtype'] for r in rows] == ['fp32', 'bf16', 'fp16']
    for r in rows:
        assert r['status'] == 'pass', r
        train = r['train']
        for key in ('outputs', 'gradients', 'bn_statistics'):
            assert 0 <= train[key] <= r['tolerance'], (r['dtype'], key)
    # fp32 agrees to rounding, far inside its tolerance
    assert rows[0]['train']['outputs'] < 1e-5


def test_attention_kernels_are_named(quick_report):
    rows = quick_report['checks']['sdpa']
    assert len(rows) == 3 * 2  # dtypes x (infer, train)
    fp32_infer = rows[0]
    assert (fp32_infer['dtype'], fp32_infer['mode']) == ('fp32', 'infer')
    # the CPU runs torch's flash kernel in fp32 (SDPA's CPU dispatch)
    assert fp32_infer['kernels'] == {'flash (CPU)': 4}  # one per block
    for r in rows:
        assert sum(r['kernels'].values()) >= 4, r


def test_amp_cp_compile_precision_and_benchmark(quick_report):
    checks = quick_report['checks']
    assert checks['amp']['finite'] and checks['amp']['steps'] == 20
    assert checks['with_cp']['gradients'] <= 1e-6
    assert checks['compile']['status'] == 'pass'
    precision = checks['precision']
    assert set(precision['images_per_s']) == {'infer', 'train'}
    for mode, fastest in precision['fastest'].items():
        assert fastest in precision['images_per_s'][mode]
        assert precision['vs_fp32'][mode]['fp32'] == 1.0
    bench = checks['vs_transformers']
    assert set(bench['runs']) == {'cls', 'dense'}
    rows = bench['runs']['cls']['rows']
    assert rows['mmcvt train']['speed_vs_transformers'] > 0
    assert set(bench['goals']) == {
        'train_speed_vs_transformers', 'train_share_of_matmul_rate',
        'dense_train_memory_vs_transformers'}


@pytest.mark.parametrize('alpha, fails', [
    (1.5, ['fp32', 'fp16']),  # 1.7% off: inside bf16's own rounding
    (1.0, ['fp32', 'bf16', 'fp16']),  # 6% off
])
def test_a_wrong_fast_path_fails(monkeypatch, alpha, fails):
    """A fast path that computes another function (QuickGELU's 1.702 folded
    as another constant) fails the check in every dtype precise enough to
    see it."""
    # the fast paths' constant (the folded MLP, and QuickGELU in fp16), not
    # the reference QuickGELU's
    monkeypatch.setattr(fp, 'QUICK_GELU_ALPHA', alpha)
    monkeypatch.setattr(kernels, 'QUICK_GELU_ALPHA', alpha)
    rows = self_check.check_fast_paths(torch.device('cpu'),
                                       self_check.QUICK_ARCH, (64, 48), 2,
                                       ['fp32', 'bf16', 'fp16'])
    assert [r['dtype'] for r in rows if r['status'] == 'fail'] == fails


def test_command_line_writes_json_and_fails_loudly(tmp_path, monkeypatch,
                                                   capsys):
    tool = load_tool('analysis', 'self_check.py')
    out = str(tmp_path / 'report.json')
    tool.main(['--device', 'cpu', '--quick', '--only', 'fast_paths',
               'with_cp', '--out', out])
    with open(out) as f:
        report = json.load(f)
    assert list(report['checks']) == ['fast_paths', 'with_cp']
    assert 'PASSED' in capsys.readouterr().out
    monkeypatch.setattr(fp, 'QUICK_GELU_ALPHA', 1.5)
    with pytest.raises(SystemExit) as e:
        tool.main(['--device', 'cpu', '--quick', '--only', 'fast_paths',
                   '--out', out])
    assert e.value.code == 1
    assert 'FAILED' in capsys.readouterr().out


def test_bad_arguments_are_named(capsys):
    tool = load_tool('analysis', 'self_check.py')
    with pytest.raises(SystemExit):
        tool.parse_args(['--size', '22ax4'])
    assert "a size is S or HxW in pixels" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            tool.parse_args(['--device', 'cuda'])
        assert 'torch cannot use a GPU here' in capsys.readouterr().err


@pytest.mark.cuda
def test_correctness_sections_pass_on_the_gpu(tmp_path):
    """The correctness sections at the published CvT-13 size on the GPU."""
    report = self_check.run('cuda', sections=('fast_paths', 'sdpa', 'amp',
                                              'with_cp'),
                            log=lambda line: None)
    assert report['passed'], report['checks']
    kernels = {k for r in report['checks']['sdpa'] for k in r['kernels']}
    assert 'math' not in kernels


BLOCKER = '''
import importlib.abc, runpy, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {blocked!r}:
            raise ImportError(f'{{name}} is not installed (blocked)')

sys.meta_path.insert(0, Block())
sys.argv = ['self_check.py'] + {argv!r}
runpy.run_path({script!r}, run_name='__main__')
'''


def test_needs_only_torch_mmengine_and_mmcvt(tmp_path):
    """Without mmcv, the toolkits and transformers (a GPU machine with a
    bare torch), the checks run and the comparison with transformers says
    why it is skipped."""
    script = osp.join(osp.dirname(osp.dirname(osp.dirname(
        osp.abspath(__file__)))), 'tools', 'analysis', 'self_check.py')
    out = str(tmp_path / 'r.json')
    code = BLOCKER.format(
        blocked={'mmcv', 'mmpretrain', 'mmdet', 'mmseg', 'transformers'},
        argv=['--device', 'cpu', '--quick', '--only', 'fast_paths',
              'vs_transformers', '--out', out],
        script=script)
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, timeout=600,
                          env=dict(os.environ, CUDA_VISIBLE_DEVICES=''))
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out) as f:
        report = json.load(f)
    assert report['checks']['vs_transformers']['status'] == 'skip'
    assert 'transformers is not installed' in \
        report['checks']['vs_transformers']['reason']
    assert report['environment']['mmcv_ops_cuda'].startswith('unavailable')
