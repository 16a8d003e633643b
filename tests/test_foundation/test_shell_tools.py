"""The shell tools as a user runs them: which arguments reach which program
(tools/demo.sh, tools/slurm_train.sh), the data converter's reuse rule and
the package's Python requirement (tools/setup_env.sh: test_setup_env.py).
Programs the scripts launch are replaced by stand-ins that record their
arguments."""
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
        # train.py leaves a checkpoint path in its --work-dir for demo.sh
        'train=false; prev=\n'
        'for a in "$@"; do case "$a" in *train.py) train=true;; esac\n'
        'if $train && [ "$prev" = --work-dir ]; then mkdir -p "$a"; '
        'echo "$a/ckpt.pth" > "$a/last_checkpoint"; fi; prev=$a; done\n')
    return prog, log


def _demo(tmp_path, *args):
    python, log = _recorder(tmp_path)
    work = tmp_path / 'work'
    env = dict(os.environ, PYTHON=python, WORK_DIRS=str(work))
    proc = subprocess.run(['bash', 'tools/demo.sh', *args],
                          cwd=ROOT,
                          env=env,
                          capture_output=True,
                          text=True)
    calls = [c.split() for c in log.read_text().splitlines()
             ] if log.exists() else []
    return proc, calls, work


def test_demo_passes_training_options_to_train_only(tmp_path):
    proc, calls, work = _demo(tmp_path, 'cls', '--amp', '--resume',
                              '--cfg-options', 'train_cfg.max_epochs=3',
                              'model.backbone.arch=21', '--no-validate')
    assert proc.returncode == 0, proc.stderr
    train = next(c for c in calls if 'tools/train.py' in c)
    test = next(c for c in calls if 'tools/test.py' in c)
    assert {'--amp', '--resume', '--no-validate'} <= set(train)
    cls_work = f'{work}/cvt-tiny_digits'
    assert test[test.index(f'{cls_work}/ckpt.pth') + 1:] == [
        '--work-dir', f'{cls_work}/test', '--cfg-options',
        'train_cfg.max_epochs=3', 'model.backbone.arch=21'
    ]
    # cls only: no scenes, no dense job; the summary of the cls job
    assert not any('prepare_digit_scenes' in ' '.join(c) for c in calls)
    assert calls[-1][-2:] == ['--job', 'cls']


@pytest.mark.parametrize('job,config', [
    ('det', 'mask-rcnn_cvt-tiny_fpn_digit-scenes'),
    ('seg', 'upernet_cvt-tiny_digit-scenes'),
])
def test_demo_dense_job_starts_from_the_classifier(tmp_path, job, config):
    """Without a classifier the dense job trains one first, then trains from
    its last checkpoint and tests at the three scales, with pictures at the
    training scale."""
    proc, calls, work = _demo(tmp_path, job)
    assert proc.returncode == 0, proc.stderr
    trains = [c for c in calls if 'tools/train.py' in c]
    assert [c[1] for c in trains] == [
        'configs/demo/cvt-tiny_digits.py', f'configs/demo/{config}.py'
    ]
    assert trains[1][-2:] == [
        '--cfg-options', 'model.backbone.init_cfg.checkpoint='
        f'{work}/cvt-tiny_digits/ckpt.pth'
    ]
    tests = [c for c in calls if 'tools/test.py' in c and config + '.py' in
             ' '.join(c)]
    assert [c[-1] for c in tests] == [
        f'test_dataloader.dataset.pipeline.1.scale=({s})'
        for s in ('168,120', '224,160', '336,240')
    ]
    assert [('--show-dir' in c) for c in tests] == [False, True, False]
    # WORK_DIRS is absolute here: the pictures go to its own folder
    show = tests[1]
    assert show[show.index('--show-dir') + 1] == f'{work}/{config}/pictures'
    assert any('prepare_digit_scenes.py' in ' '.join(c) for c in calls)
    # the curves, with the from-scratch control's when it is there
    plot = next(c for c in calls if 'plot_curves.py' in ' '.join(c) and
                f'{work}/{config}' in c)
    assert plot[1:3] == [f'{work}/{config}', f'{work}/{config}_scratch']
    assert plot[plot.index('--out') + 1] == f'{work}/{config}/curves.png'
    # a second run reuses the classifier
    proc, calls_again, _ = _demo(tmp_path, job)
    assert proc.returncode == 0, proc.stderr
    trains = [c for c in calls_again[len(calls):] if 'tools/train.py' in c]
    assert len(trains) == 1


def test_demo_rejects_an_unknown_job(tmp_path):
    proc, calls, _ = _demo(tmp_path, 'detect')
    assert proc.returncode == 2
    assert "unknown job 'detect'" in proc.stderr and not calls


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
