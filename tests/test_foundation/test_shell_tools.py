"""The shell tools as a user runs them: which arguments reach which program
(tools/demo.sh, tools/slurm_train.sh), the mmcv build step of
tools/setup_env.sh on failure, the data converter's reuse rule and the
package's Python requirement. Programs the scripts launch are replaced by
stand-ins that record their arguments."""
import os
import os.path as osp
import re
import stat
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _executable(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def _recorder(tmp_path, name='python'):
    """A stand-in program that appends its arguments, one call a line, to
    ``calls.txt``."""
    log = tmp_path / 'calls.txt'
    prog = _executable(
        tmp_path / name, '#!/usr/bin/env bash\n'
        f'printf "%s " "$@" >> {log}\necho >> {log}\n'
        # train.py leaves a checkpoint path for demo.sh to evaluate
        'for a in "$@"; do case "$a" in *train.py) '
        'mkdir -p "$WORK_DIR"; echo ckpt.pth > "$WORK_DIR/last_checkpoint";;'
        'esac; done\n')
    return prog, log


def test_demo_passes_training_options_to_train_only(tmp_path):
    python, log = _recorder(tmp_path)
    work = tmp_path / 'work'
    env = dict(os.environ, PYTHON=python, WORK_DIR=str(work))
    subprocess.run([
        'bash', 'tools/demo.sh', '--amp', '--resume', '--cfg-options',
        'train_cfg.max_epochs=3', 'model.backbone.arch=21', '--no-validate'
    ],
                   cwd=ROOT,
                   env=env,
                   check=True,
                   capture_output=True)
    calls = log.read_text().splitlines()
    train = next(c for c in calls if 'tools/train.py' in c).split()
    test = next(c for c in calls if 'tools/test.py' in c).split()
    assert {'--amp', '--resume', '--no-validate'} <= set(train)
    assert test[test.index('ckpt.pth') + 1:] == [
        '--work-dir', f'{work}/test', '--cfg-options',
        'train_cfg.max_epochs=3', 'model.backbone.arch=21'
    ]


@pytest.mark.parametrize('args,work_dir,rest', [
    ([], None, []),
    (['--amp'], None, ['--amp']),
    (['wd'], 'wd', []),
    (['wd', '--amp', '--cfg-options', 'a=1'], 'wd', ['--amp',
                                                     '--cfg-options', 'a=1']),
])
def test_slurm_train_work_dir_is_optional(tmp_path, args, work_dir, rest):
    srun, log = _recorder(tmp_path, 'srun')
    env = dict(os.environ, PATH=f'{tmp_path}:{os.environ["PATH"]}',
               PYTHON='py')
    subprocess.run(['bash', 'tools/slurm_train.sh', 'part', 'job', 'cfg.py'] +
                   args,
                   cwd=ROOT,
                   env=env,
                   check=True,
                   capture_output=True)
    call = log.read_text().split()
    after = call[call.index('cfg.py') + 1:]
    expected = ([f'--work-dir={work_dir}'] if work_dir else []) + [
        '--launcher=slurm'
    ] + rest
    assert after == expected
    assert '--work-dir=' not in call


def test_setup_env_cleans_up_a_failed_mmcv_build(tmp_path):
    """A failing mmcv build leaves no temporary folder behind, and the wheel
    cache is keyed on the torch build (CPU and CUDA wheels differ)."""
    venv = tmp_path / 'venv'
    (venv / 'bin').mkdir(parents=True)
    # a stand-in interpreter: pip installs succeed, mmcv is missing, the
    # sdist download fails
    _executable(
        venv / 'bin' / 'python', '#!/usr/bin/env bash\n'
        'case "$1 $2 $3" in\n'
        '  "-m pip download"*) '
        'echo "download refused" >&2; exit 1;;\n'
        '  "-m pip install"*) exit 0;;\n'
        'esac\n'
        'if [ "$1" = "-c" ]; then case "$2" in *torch.version.cuda*) '
        'echo 2.14.1-cpu-cudanone; exit 0;; esac; exit 1; fi\n'
        'cat > /dev/null; exit 1\n')
    tmp = tmp_path / 'tmp'
    tmp.mkdir()
    env = dict(os.environ, MMCVT_VENV=str(venv),
               MMCVT_CACHE=str(tmp_path / 'cache'), TMPDIR=str(tmp),
               MMCVT_PYTHON=sys.executable)
    res = subprocess.run(['bash', 'tools/setup_env.sh'],
                         cwd=ROOT,
                         env=env,
                         capture_output=True,
                         text=True)
    assert res.returncode == 1
    assert 'download refused' in res.stderr
    assert 'setup_env: ERROR: step failed' in res.stderr
    assert 'wheels/torch-2.14.1-cpu-cudanone-py311' in res.stdout
    assert os.listdir(tmp) == []


def test_prepare_digits_rewrites_for_other_settings(tmp_path):
    sys.path.insert(0, osp.join(ROOT, 'tools', 'dataset_converters'))
    try:
        from prepare_digits import prepare_digits
    finally:
        sys.path.pop(0)
    from PIL import Image
    out = str(tmp_path / 'digits')

    def first_image():
        with open(osp.join(out, 'meta', 'val.txt')) as f:
            return Image.open(osp.join(out, 'val', f.readline().split()[0]))

    counts = prepare_digits(out, size=16)
    assert first_image().size == (16, 16)
    mtime = os.path.getmtime(osp.join(out, 'meta', 'train.txt'))
    assert prepare_digits(out, size=16) == counts  # reused as it is
    assert os.path.getmtime(osp.join(out, 'meta', 'train.txt')) == mtime
    prepare_digits(out, size=24)
    assert first_image().size == (24, 24)
    counts_b = prepare_digits(out, size=24, val_ratio=0.5)
    assert counts_b['val'] > counts['val']
    with open(osp.join(out, 'meta', 'val.txt')) as f:
        assert sum(1 for _ in f) == counts_b['val']


def test_python_requirement_matches_setup_env():
    with open(osp.join(ROOT, 'setup.py')) as f:
        required = re.search(r"python_requires='>=(\d+\.\d+)'",
                             f.read()).group(1)
    with open(osp.join(ROOT, 'tools', 'setup_env.sh')) as f:
        pinned = re.search(r'sys\.version_info\[:2\] == \((\d+), (\d+)\)',
                           f.read()).groups()
    assert required == '.'.join(pinned)
