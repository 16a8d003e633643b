"""tools/train.py, tools/test.py and tools/dist_train.sh as a user runs
them."""
import json
import os
import os.path as osp
import pickle
import subprocess
import sys

import pytest
import torch

import mmcvt  # noqa: F401  (registers the safe globals for torch.load)
from .tiny_classification import write_job

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

HOOKS = '''
import torch

import mmcvt  # noqa: F401  (registers the safe globals for torch.load)
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class StopAtIter(Hook):
    """Kill the job right after iteration ``stop_at`` (and its checkpoint)."""
    priority = 'LOWEST'

    def __init__(self, stop_at):
        self.stop_at = stop_at

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter + 1 == self.stop_at:
            raise SystemExit(3)


@HOOKS.register_module()
class DumpStartState(Hook):
    """Save what the run starts from, after any resume."""

    def __init__(self, out):
        self.out = out

    def before_train(self, runner):
        torch.save(dict(iter=runner.iter,
                        state_dict=runner.model.state_dict(),
                        optimizer=runner.optim_wrapper.state_dict()),
                   self.out)
'''


def _run(args, cwd, env=None, check=True):
    env = {**os.environ, **(env or {})}
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in [cwd, ROOT, env.get('PYTHONPATH', '')] if p)
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f'{args} exited {proc.returncode}\n'
                             f'{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}')
    return proc


def _assert_tensors_equal(a, b, path=''):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f'{path} differs'
    elif isinstance(a, dict):
        assert set(a) == set(b), f'{path} keys differ'
        for k in a:
            _assert_tensors_equal(a[k], b[k], f'{path}.{k}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f'{path} lengths differ'
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_tensors_equal(x, y, f'{path}[{i}]')
    else:
        assert a == b, f'{path}: {a} != {b}'


def test_train_stop_resume_and_test(tmp_path):
    cfg = write_job(tmp_path)
    (tmp_path / 'resume_hooks.py').write_text(HOOKS)
    work = str(tmp_path / 'work')
    start = str(tmp_path / 'start.pth')
    hooks_cfg = ("_base_ = ['tiny_cls.py']\n"
                 "custom_imports = dict(imports=['resume_hooks'], "
                 "allow_failed_imports=False)\n"
                 "custom_hooks = [{hook}]\n")
    stopping = tmp_path / 'stopping.py'
    stopping.write_text(hooks_cfg.format(
        hook="dict(type='StopAtIter', stop_at=4)"))
    dumping = tmp_path / 'dumping.py'
    dumping.write_text(hooks_cfg.format(
        hook=f"dict(type='DumpStartState', out={start!r})"))

    def train(config, *args):
        return [sys.executable, osp.join(ROOT, 'tools/train.py'),
                str(config), '--work-dir', work, *args]

    # run 1 is killed after iteration 4, whose checkpoint is on disk
    proc = _run(train(stopping), cwd=str(tmp_path), check=False)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert osp.isfile(osp.join(work, 'iter_4.pth'))
    assert not osp.exists(osp.join(work, 'iter_6.pth'))

    # run 2 resumes from the latest checkpoint and finishes
    _run(train(dumping, '--resume'), cwd=str(tmp_path))
    saved = torch.load(osp.join(work, 'iter_4.pth'), map_location='cpu')
    resumed = torch.load(start, map_location='cpu')
    assert resumed['iter'] == 4
    _assert_tensors_equal(saved['state_dict'], resumed['state_dict'],
                          'state_dict')
    _assert_tensors_equal(saved['optimizer'], resumed['optimizer'],
                          'optimizer')
    assert len(saved['optimizer']['state']) > 0  # AdamW moments were saved
    final = torch.load(osp.join(work, 'iter_8.pth'), map_location='cpu')
    assert final['meta']['iter'] == 8
    assert not torch.equal(final['state_dict']['head.fc.weight'],
                           saved['state_dict']['head.fc.weight'])

    # the checkpoint evaluates with tools/test.py
    # with pictures (mmpretrain's VisualizationHook) and the metrics file
    out = str(tmp_path / 'preds.pkl')
    show = tmp_path / 'pictures'
    proc = _run([sys.executable, osp.join(ROOT, 'tools/test.py'), cfg,
                 osp.join(work, 'iter_8.pth'), '--work-dir',
                 str(tmp_path / 'test'), '--out', out, '--show-dir',
                 str(show)], cwd=str(tmp_path))
    assert 'accuracy/top1' in proc.stdout + proc.stderr
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 16  # the whole val split
    with open(tmp_path / 'test' / 'metrics.json') as f:
        top1 = json.load(f)['accuracy/top1']
    correct = sum(int(p['pred_label'][0] == p['gt_label'][0]) for p in preds)
    assert top1 == pytest.approx(100 * correct / 16)
    # one picture an image, named after the image file (the two class
    # folders of the tiny job share file names)
    names = {osp.basename(p['img_path']) for p in preds}
    assert {f.name.split('.png_')[0] + '.png'
            for f in show.glob('*.png')} == names


def test_resume_missing_checkpoint_is_clear(tmp_path):
    cfg = write_job(tmp_path)
    proc = _run([sys.executable, osp.join(ROOT, 'tools/train.py'), cfg,
                 '--resume', str(tmp_path / 'nope.pth')],
                cwd=str(tmp_path), check=False)
    assert proc.returncode != 0
    assert 'no such checkpoint' in proc.stderr


def test_resume_in_a_work_dir_without_checkpoints_is_an_error(tmp_path):
    """--resume alone in an empty or mistyped work dir names the folder it
    looked in (it used to train from scratch and exit 0)."""
    cfg = write_job(tmp_path)
    work = tmp_path / 'wokr'
    proc = _run([sys.executable, osp.join(ROOT, 'tools/train.py'), cfg,
                 '--work-dir', str(work), '--resume'],
                cwd=str(tmp_path), check=False)
    assert proc.returncode != 0
    assert (f'found no checkpoint to resume in the work dir {work}'
            in proc.stderr)
    assert 'the folder does not exist' in proc.stderr
    assert not list(tmp_path.glob('**/*.pth'))


def test_resume_in_a_moved_work_dir_and_not_from_weights_only(tmp_path):
    """A work dir moved after training resumes from its own files (its
    last_checkpoint names the old path); a checkpoint with the weights
    only (what mmengine saves as the best one) is refused with the way to
    start from its weights."""
    cfg = write_job(tmp_path)
    old, new = tmp_path / 'old', tmp_path / 'new'

    def train(work, *args):
        return _run([sys.executable, osp.join(ROOT, 'tools/train.py'), cfg,
                     '--work-dir', str(work), *args], cwd=str(tmp_path),
                    check=False)

    assert train(old, '--cfg-options', 'train_cfg.max_iters=4').returncode \
        == 0
    assert (old / 'last_checkpoint').read_text().strip() == str(
        old / 'iter_4.pth')
    os.rename(old, new)
    proc = train(new, '--resume', '--cfg-options', 'train_cfg.max_iters=6')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f'Load checkpoint from {new}/iter_4.pth' in proc.stdout + \
        proc.stderr
    assert torch.load(new / 'iter_6.pth', map_location='cpu')['meta'][
        'iter'] == 6
    # another head since: named, with the way to fine-tune instead
    proc = train(new, '--resume', '--cfg-options', 'train_cfg.max_iters=8',
                 'model.head.num_classes=3')
    assert proc.returncode != 0
    assert ('2 parameter(s) of the model changed shape since that checkpoint '
            '(head.fc.weight (2, 64) -> (3, 64); head.fc.bias (2,) -> (3,))'
            in proc.stderr)
    assert 'changed shape' in proc.stderr and 'load_from=' in proc.stderr
    # the weights alone
    ckpt = torch.load(new / 'iter_6.pth', map_location='cpu')
    weights = str(tmp_path / 'best_accuracy_top1_iter_6.pth')
    torch.save(dict(meta=ckpt['meta'], state_dict=ckpt['state_dict']),
               weights)
    proc = train(tmp_path / 'third', '--resume', weights)
    assert proc.returncode != 0
    assert 'no training state (optimizer and message_hub missing' in \
        proc.stderr
    assert f'--cfg-options load_from={weights}' in proc.stderr


def test_test_py_refuses_a_checkpoint_that_leaves_the_model_unset(tmp_path):
    """A checkpoint of another model (here: the weights without the
    classification head) used to score random weights with exit code 0;
    now tools/test.py fails and names what is missing."""
    cfg = write_job(tmp_path)
    work = tmp_path / 'work'
    _run([sys.executable, osp.join(ROOT, 'tools/train.py'), cfg, '--work-dir',
          str(work), '--cfg-options', 'train_cfg.max_iters=2'],
         cwd=str(tmp_path))
    ckpt = torch.load(work / 'iter_2.pth', map_location='cpu')
    ckpt['state_dict'] = {k: v for k, v in ckpt['state_dict'].items()
                          if not k.startswith('head.')}
    other = str(tmp_path / 'backbone_only.pth')
    torch.save(ckpt, other)
    proc = _run([sys.executable, osp.join(ROOT, 'tools/test.py'), cfg, other,
                 '--work-dir', str(work)], cwd=str(tmp_path), check=False)
    assert proc.returncode != 0
    assert 'leaves 2 of the model\'s' in proc.stderr
    assert 'unset: head.fc (e.g. head.fc.weight)' in proc.stderr
    assert not (work / 'metrics.json').exists()


def test_resume_falls_back_from_a_torn_checkpoint(tmp_path):
    """The newest checkpoint torn by a crash (last_checkpoint names it):
    --resume takes the newest one that loads, and says so."""
    cfg = write_job(tmp_path)
    work = tmp_path / 'work'
    _run([sys.executable, osp.join(ROOT, 'tools/train.py'), cfg, '--work-dir',
          str(work), '--cfg-options', 'train_cfg.max_iters=4'],
         cwd=str(tmp_path))
    torn = work / 'iter_4.pth'
    data = torn.read_bytes()
    torn.write_bytes(data[:len(data) // 2])
    proc = _run([sys.executable, osp.join(ROOT, 'tools/train.py'), cfg,
                 '--work-dir', str(work), '--resume', '--cfg-options',
                 'train_cfg.max_iters=6'], cwd=str(tmp_path))
    assert (f'names {torn}, which does not load; resuming from '
            f'{work}/iter_2.pth' in proc.stderr)
    assert torch.load(work / 'iter_6.pth', map_location='cpu')['meta'][
        'iter'] == 6


def test_dist_train_two_cpu_processes(free_port, tmp_path):
    cfg = write_job(tmp_path)
    work = str(tmp_path / 'work')
    proc = _run(['bash', osp.join(ROOT, 'tools/dist_train.sh'), cfg, '2',
                 '--work-dir', work, '--cfg-options', 'train_cfg.max_iters=4',
                 'train_cfg.val_interval=4',
                 # GPU configs ask for SyncBN; on CPU it is skipped
                 'sync_bn=torch'],
                cwd=str(tmp_path), env=dict(PORT=str(free_port()),
                                            PYTHON=sys.executable))
    log = proc.stdout + proc.stderr
    assert 'Distributed training: True' in log
    assert 'GPU number: 2' in log  # mmengine's name for the world size
    assert 'SyncBatchNorm needs GPUs' in log
    ckpt = torch.load(osp.join(work, 'iter_4.pth'), map_location='cpu')
    assert ckpt['meta']['iter'] == 4


def _descendants(pid: int) -> set:
    """Every process below ``pid`` (from /proc's children lists)."""
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f'/proc/{p}/task/{p}/children') as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:
            continue
        found.update(kids)
        todo += kids
    return found


def _alive(pids) -> set:
    alive = set()
    for p in pids:
        try:
            with open(f'/proc/{p}/stat') as f:
                if f.read().split(')')[-1].split()[0] != 'Z':  # not a zombie
                    alive.add(p)
        except OSError:
            pass
    return alive


def test_sigterm_to_dist_train_stops_every_rank(free_port, tmp_path):
    """`kill -TERM` of `bash tools/dist_train.sh CFG 2` (what Ctrl-C, kill
    and a cluster's preemption send) stops torchrun, both ranks and their
    data workers, not the shell alone."""
    import signal
    import time
    cfg = write_job(tmp_path)
    log = open(tmp_path / 'out.log', 'w')
    env = dict(os.environ, PORT=str(free_port()), PYTHON=sys.executable,
               PYTHONPATH=ROOT)
    proc = subprocess.Popen(
        ['bash', osp.join(ROOT, 'tools/dist_train.sh'), cfg, '2',
         '--work-dir', str(tmp_path / 'work'), '--cfg-options',
         'train_cfg.max_iters=100000', 'train_cfg.val_interval=100000',
         'default_hooks.checkpoint.interval=100000',
         'train_dataloader.num_workers=1'],
        cwd=str(tmp_path), env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        deadline = time.time() + 240
        while 'loss:' not in (tmp_path / 'out.log').read_text():
            assert proc.poll() is None, (tmp_path / 'out.log').read_text()
            assert time.time() < deadline, 'training did not start'
            time.sleep(1)
        tree = _descendants(proc.pid) | {proc.pid}
        assert len(tree) >= 3  # torchrun and two ranks (and their workers)
        os.kill(proc.pid, signal.SIGTERM)
        deadline = time.time() + 30
        while _alive(tree) and time.time() < deadline:
            proc.poll()
            time.sleep(0.5)
        assert _alive(tree) == set()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        log.close()


def test_a_misspelt_top_level_option_is_named(tmp_path):
    """--cfg-options randomnes.seed=5 added a setting nothing reads; now a
    warning names it and the likely key. Keys of the config and of the
    Runner pass quietly."""
    import argparse
    import warnings

    from mmengine.config import Config

    from mmcvt.cli import merge_common_args
    cfg = Config.fromfile(write_job(tmp_path))

    def merge(options):
        args = argparse.Namespace(cfg_options=options, launcher='none',
                                  work_dir=str(tmp_path), config='x.py')
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            merge_common_args(cfg, args)
        return [str(w.message) for w in caught if 'nothing will read' in
                str(w.message)]

    msgs = merge({'randomnes.seed': 5})
    assert msgs == ["--cfg-options randomnes...: 'randomnes' is not a "
                    "setting of this config or of mmengine's Runner, so "
                    "nothing will read it. Did you mean 'randomness'?"]
    assert merge({'randomness.seed': 5, 'train_cfg.max_iters': 2,
                  'experiment_name': 'x', 'sync_bn': 'torch'}) == []
