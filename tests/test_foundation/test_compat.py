"""The compatibility fixes ``import mmcvt`` applies (see mmcvt/compat.py)."""
import os
import pickle

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader

import mmcvt  # noqa: F401
from mmcvt import compat
from mmcvt.compat import TRUST_ENV


def _runner_like_checkpoint():
    buf = HistoryBuffer()
    buf.update(0.5)
    buf.update(0.25)
    return dict(
        meta=dict(seed=np.int64(3), lr=np.float32(0.1), epoch=1),
        message_hub=dict(log_scalars={'train/loss': buf}),
        state_dict={'w': torch.ones(2)},
        rng=np.arange(4, dtype=np.uint32))


def test_runner_checkpoint_loads_with_weights_only(tmp_path):
    path = str(tmp_path / 'ckpt.pth')
    torch.save(_runner_like_checkpoint(), path)
    # nothing in it needs an unsafe global (no builtins.getattr)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    ckpt = torch.load(path, weights_only=True)
    buf = ckpt['message_hub']['log_scalars']['train/loss']
    assert buf.mean() == pytest.approx(0.375)
    assert buf.statistics('max') == 0.5  # statistics methods restored
    assert ckpt['meta']['seed'] == 3
    assert ckpt['rng'].dtype == np.uint32


def test_untrusted_checkpoint_gives_clear_error(tmp_path, monkeypatch):
    path = str(tmp_path / 'old.pth')
    # what an unpatched mmengine wrote: methods pickled through getattr
    state = {'statistics_methods': {'min': HistoryBuffer.min}}
    torch.save({'hub': state}, path)
    monkeypatch.delenv(TRUST_ENV, raising=False)
    with pytest.raises(pickle.UnpicklingError, match=TRUST_ENV):
        CheckpointLoader.load_checkpoint(path)
    monkeypatch.setenv(TRUST_ENV, '1')
    ckpt = CheckpointLoader.load_checkpoint(path)
    assert ckpt['hub']['statistics_methods']['min'] is HistoryBuffer.min


@pytest.mark.parametrize('base', [
    'mmpretrain::_base_/default_runtime.py',
    'mmdet::_base_/default_runtime.py',
    'mmseg::_base_/default_runtime.py',
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmcvt::cvt/cvt-21_imagenet.py',  # our own, from the packaged configs
])
def test_pkg_config_bases_load(tmp_path, base):
    cfg_file = tmp_path / 'cfg.py'
    cfg_file.write_text(f'_base_ = [{base!r}]\nmarker = 1\n')
    cfg = Config.fromfile(str(cfg_file))
    assert cfg.marker == 1
    assert len(cfg.keys()) > 1  # the base's content arrived


def test_amp_optim_wrapper_without_gpu_is_clear():
    from mmengine.optim import AmpOptimWrapper
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    if torch.cuda.is_available():
        assert AmpOptimWrapper(optimizer=optimizer) is not None
    else:
        with pytest.raises(RuntimeError, match='drop `--amp`'):
            AmpOptimWrapper(optimizer=optimizer)


def test_train_tool_fixes_persistent_workers(tmp_path):
    import os.path as osp
    import sys
    tools = osp.join(osp.dirname(osp.dirname(osp.dirname(
        osp.abspath(__file__)))), 'tools')
    sys.path.insert(0, tools)
    try:
        from train import merge_args, parse_args
    finally:
        sys.path.remove(tools)
    cfg = Config(dict(
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_dataloader=dict(num_workers=0, persistent_workers=True),
        val_dataloader=dict(num_workers=2, persistent_workers=True)))
    cfg = merge_args(cfg, parse_args(['x.py', '--amp']))
    assert cfg.train_dataloader.persistent_workers is False
    assert cfg.val_dataloader.persistent_workers is True
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    with pytest.raises(ValueError, match='base_batch_size'):
        merge_args(Config(dict(optim_wrapper=dict())),
                   parse_args(['x.py', '--auto-scale-lr']))


# ---------------------------------------------------------------------------
# files that are not checkpoints
# ---------------------------------------------------------------------------


def test_random_bytes_are_not_a_checkpoint(tmp_path, monkeypatch):
    """Not a pickle at all: say so (file name and size), and do not point
    at the unsafe loader."""
    path = tmp_path / 'weights.pth'
    path.write_bytes(np.random.default_rng(0).bytes(1000))
    monkeypatch.delenv(TRUST_ENV, raising=False)
    with pytest.raises(ValueError) as info:
        CheckpointLoader.load_checkpoint(str(path))
    msg = str(info.value)
    assert 'weights.pth (1,000 bytes) is not a readable PyTorch checkpoint' \
        in msg
    assert TRUST_ENV not in msg
    # nor torch's advice to turn the safe loader off
    assert 'weights_only' not in msg and info.value.__cause__ is None


@pytest.mark.parametrize('content', ['truncated', 'empty', 'text'])
def test_broken_files_name_the_file(tmp_path, content):
    good = tmp_path / 'good.pth'
    torch.save({'w': torch.ones(100)}, good)
    path = tmp_path / f'{content}.pth'
    if content == 'truncated':
        data = good.read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif content == 'empty':
        path.write_bytes(b'')
    else:
        path.write_text('model weights here\n')
    with pytest.raises(ValueError,
                       match=rf'{content}\.pth \([\d,]+ bytes\) is not a '
                       'readable PyTorch checkpoint') as info:
        CheckpointLoader.load_checkpoint(str(path))
    assert TRUST_ENV not in str(info.value)


# ---------------------------------------------------------------------------
# applying the fixes: once, and only to the versions they were written for
# ---------------------------------------------------------------------------


def _patched_functions():
    import mmengine.dist.utils as dist_utils
    import mmengine.runner.runner as runner_mod
    from mmengine.model import MMDistributedDataParallel
    from mmengine.optim import AmpOptimWrapper
    return (AmpOptimWrapper.__init__, dist_utils._init_dist_pytorch,
            MMDistributedDataParallel.__init__,
            runner_mod.convert_sync_batchnorm, HistoryBuffer.__getstate__)


def test_fixes_are_applied_once():
    before = _patched_functions()
    assert all(getattr(f, compat._MARK, False) for f in before)
    import importlib
    importlib.reload(compat)  # a second import of the module
    compat.apply(force=True)
    compat.apply(force=True)
    assert _patched_functions() == before  # no wrapper around a wrapper
    # and the wrapped originals are mmengine's own
    for f in before:
        assert not getattr(f.__wrapped__, compat._MARK, False)


def test_unsupported_mmengine_is_skipped_with_a_warning(monkeypatch):
    import mmengine
    from mmengine.optim import AmpOptimWrapper
    monkeypatch.setattr(mmengine, '__version__', '0.11.0')
    calls = []
    monkeypatch.setattr(compat, '_FIXES',
                        (('dummy fix', lambda: calls.append(1)), ))
    with pytest.warns(UserWarning, match=r'mmengine 0\.11\.0.*skipped: '
                      'dummy fix'):
        compat.apply(force=True)
    assert calls == []
    monkeypatch.setattr(mmengine, '__version__',
                        compat.SUPPORTED_MMENGINE[0])
    compat.apply(force=True)
    assert calls == [1]
    assert getattr(AmpOptimWrapper.__init__, compat._MARK, False)


@pytest.mark.parametrize('device,accelerator', [('cpu', None), ('mps', None),
                                                ('cuda', 'cuda'),
                                                ('npu', 'npu'),
                                                ('mlu', 'mlu')])
def test_no_accelerator_follows_mmengine(monkeypatch, device, accelerator):
    """"No accelerator" is mmengine's get_device(), so NPU / MLU machines
    keep their own distributed and AMP set-up."""
    import mmengine.device
    monkeypatch.setattr(mmengine.device, 'get_device', lambda: device)
    assert compat._distributed_accelerator() == accelerator


class _RunsCode:
    """A pickle payload that would run a shell command when unpickled."""

    def __reduce__(self):
        return (os.system, ('echo this-should-never-run',))


class _Harmless:
    pass


def test_checkpoint_that_would_run_code_is_called_unsafe(tmp_path,
                                                          monkeypatch):
    """torch's block list refused it (os.system): the message names the
    call, calls the file unsafe, and never suggests a full unpickle (not
    MMCVT_TRUST_CHECKPOINTS, not weights_only=False), as it does for a file
    that is only broken or holds harmless classes of the user's own."""
    monkeypatch.delenv(TRUST_ENV, raising=False)
    evil = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {}, 'x': _RunsCode()}, evil)
    with pytest.raises(pickle.UnpicklingError) as e:
        CheckpointLoader.load_checkpoint(evil)
    msg = str(e.value)
    assert f'{evil} is unsafe: loading it would call posix.system' in msg
    assert 'unsupported GLOBAL posix.system whose module posix is blocked' \
        in msg
    assert 'Do not load this file with a full unpickle' in msg
    assert 'will likely succeed' not in msg  # torch's general advice
    assert 'corrupted' not in msg
    custom = str(tmp_path / 'custom.pth')
    torch.save({'state_dict': {}, 'x': _Harmless()}, custom)
    with pytest.raises(pickle.UnpicklingError) as e:
        CheckpointLoader.load_checkpoint(custom)
    msg = str(e.value)
    assert 'test_compat._Harmless' in msg and TRUST_ENV in msg
    assert 'unsafe' not in msg and 'will likely succeed' not in msg


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    """The job killed while a checkpoint's bytes go to disk: the previous
    file under that name stays whole, and no temporary file is left."""
    import builtins

    import mmengine.runner.runner as runner_mod
    path = str(tmp_path / 'epoch_4.pth')
    runner_mod.save_checkpoint({'state_dict': {'w': torch.ones(3)}}, path)
    real_open = builtins.open

    class Killed:
        """A file that takes 100 bytes, then the process 'dies'."""

        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(bytes(data)[:100])
            self.f.flush()
            raise KeyboardInterrupt

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def dying_open(file, mode='r', *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return Killed(f) if 'w' in mode and 'b' in mode else f

    monkeypatch.setattr(builtins, 'open', dying_open)
    with pytest.raises(KeyboardInterrupt):
        runner_mod.save_checkpoint({'state_dict': {'w': torch.zeros(3)}},
                                   path)
    monkeypatch.setattr(builtins, 'open', real_open)
    assert os.listdir(tmp_path) == ['epoch_4.pth']
    assert torch.load(path)['state_dict']['w'].tolist() == [1., 1., 1.]


@pytest.mark.parametrize('copied', [True, False])
def test_resumed_best_checkpoint_stays_in_the_work_dir(tmp_path, copied):
    """`cp -r A B` and resuming in B restored A's best checkpoint by its
    absolute path, and the hook deleted A's file at the next best; now the
    hook keeps to B (its copy of the file, or none)."""
    import types

    from mmengine.hooks import CheckpointHook
    from mmengine.logging import MessageHub, MMLogger
    old, new = tmp_path / 'A', tmp_path / 'B'
    old.mkdir()
    new.mkdir()
    (old / 'best_accuracy_top1_iter_4.pth').write_bytes(b'x')
    if copied:
        (new / 'best_accuracy_top1_iter_4.pth').write_bytes(b'x')
    hub = MessageHub.get_instance(f'best-{copied}')
    hub.update_info('best_ckpt', str(old / 'best_accuracy_top1_iter_4.pth'))
    runner = types.SimpleNamespace(
        work_dir=str(new), message_hub=hub,
        logger=MMLogger.get_instance(f'best-{copied}'))
    hook = CheckpointHook(interval=1, save_best='accuracy/top1')
    hook.before_train(runner)
    assert hook.best_ckpt_path == (
        str(new / 'best_accuracy_top1_iter_4.pth') if copied else None)


def test_an_empty_image_is_named(tmp_path):
    """A 0-byte image stopped a training job with cv2's "!buf.empty()" and
    no file name (an image of random bytes was already named)."""
    from mmcv.transforms import LoadImageFromFile
    empty = tmp_path / 'broken.png'
    empty.write_bytes(b'')
    with pytest.raises(OSError) as e:
        LoadImageFromFile()(dict(img_path=str(empty)))
    assert f'could not read the image {empty} (0 bytes)' in str(e.value)
    missing = str(tmp_path / 'gone.png')
    with pytest.raises(Exception, match='gone.png'):
        LoadImageFromFile()(dict(img_path=missing))
