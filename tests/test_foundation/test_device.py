"""The device a run gets (mmcvt/utils/device.py): NVIDIA GPUs that torch
cannot use stop tools/train.py, tools/test.py and tools/dist_train.sh
with a message that names the driver fix (instead of N processes training
on the CPU); the CUDA settings of a config (deterministic cuBLAS, TF32) are
applied before the Runner; no shipped config forces the gloo backend on
GPUs."""
import glob
import os
import os.path as osp
import stat
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from mmcvt.utils import device as dev
from .tiny_classification import write_job

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _fake_nvidia_smi(folder) -> str:
    """A stand-in nvidia-smi that lists one GPU (what a node whose driver
    is too old for torch's CUDA shows: the GPU is there, torch cannot use
    it)."""
    path = osp.join(folder, 'nvidia-smi')
    with open(path, 'w') as f:
        f.write('#!/usr/bin/env bash\n'
                'echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)"\n')
    os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)
    return folder


@pytest.fixture
def a_gpu_torch_cannot_use(tmp_path, monkeypatch):
    """This machine, as a GPU node with a driver torch cannot use: the
    driver lists a GPU, torch.cuda.is_available() is False (as it is
    here)."""
    gpus = tmp_path / 'gpus'
    (gpus / '0000:17:00.0').mkdir(parents=True)
    monkeypatch.setattr(dev, 'NVIDIA_PROC_GPUS', str(gpus))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES', raising=False)


def test_unusable_gpus_are_an_error_that_names_the_fix(
        a_gpu_torch_cannot_use):
    assert dev.nvidia_gpus() == 1
    with pytest.raises(RuntimeError) as e:
        dev.check_gpus_usable()
    msg = str(e.value)
    assert 'This machine has 1 NVIDIA GPU(s), but torch' in msg
    assert 'would train or test on the CPU' in msg
    if torch.version.cuda:  # the registry's torch is a CUDA 13.0 build
        assert f'built for CUDA {torch.version.cuda}' in msg
        assert 'needs NVIDIA driver >= 580.65.06' in msg
    assert 'CUDA_VISIBLE_DEVICES= (empty)' in msg


def test_hidden_gpus_or_none_are_no_error(a_gpu_torch_cannot_use,
                                          monkeypatch, tmp_path):
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '')
    assert dev.unusable_gpus_message() is None
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '-1')
    assert dev.unusable_gpus_message() is None
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES')
    monkeypatch.setattr(dev, 'NVIDIA_PROC_GPUS', str(tmp_path / 'none'))
    monkeypatch.setenv('PATH', str(tmp_path))  # no nvidia-smi either
    assert dev.nvidia_gpus() == 0
    assert dev.unusable_gpus_message() is None


def test_train_py_refuses_before_training(a_gpu_torch_cannot_use, tmp_path):
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    try:
        import train
    finally:
        sys.path.pop(0)
    cfg = write_job(tmp_path)
    with pytest.raises(RuntimeError, match='cannot use them'):
        train.main([cfg, '--work-dir', str(tmp_path / 'work')])
    assert not glob.glob(str(tmp_path / 'work' / '*.pth'))


def test_dist_train_with_gpus_torch_cannot_use_stops(free_port, tmp_path):
    """tools/dist_train.sh CONFIG 2 on such a node (nvidia-smi lists a GPU,
    torch sees none): every rank stops with the message, nothing trains."""
    cfg = write_job(tmp_path)
    work = tmp_path / 'work'
    # on a GPU host too: a device list that names no GPU hides them from
    # torch without saying "on purpose" (as '' does)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='GPU-no-such-device',
               PORT=str(free_port()), PYTHON=sys.executable,
               PYTHONPATH=ROOT)
    env['PATH'] = _fake_nvidia_smi(str(tmp_path)) + os.pathsep + env['PATH']
    proc = subprocess.run(
        ['bash', osp.join(ROOT, 'tools/dist_train.sh'), cfg, '2',
         '--work-dir', str(work), '--cfg-options', 'train_cfg.max_iters=2'],
        cwd=str(tmp_path), env=env, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode != 0
    assert 'This machine has 1 NVIDIA GPU(s), but torch' in proc.stderr
    assert not glob.glob(str(work / '*.pth'))


def test_deterministic_runs_get_a_deterministic_cublas(tmp_path, monkeypatch):
    """randomness.deterministic=True: CUBLAS_WORKSPACE_CONFIG is set before
    the Runner turns on torch.use_deterministic_algorithms (without it
    every cuBLAS call raises on a GPU); a value the user set is kept."""
    from mmcvt.cli import build_runner
    monkeypatch.delenv('CUBLAS_WORKSPACE_CONFIG', raising=False)
    cfg = Config.fromfile(write_job(tmp_path))
    cfg.work_dir = str(tmp_path / 'work')
    cfg.randomness = dict(seed=0, deterministic=True)
    try:
        build_runner(cfg)
        assert torch.are_deterministic_algorithms_enabled()
        assert os.environ['CUBLAS_WORKSPACE_CONFIG'] == ':4096:8'
        monkeypatch.setenv('CUBLAS_WORKSPACE_CONFIG', ':16:8')
        dev.apply_cuda_settings(cfg)
        assert os.environ['CUBLAS_WORKSPACE_CONFIG'] == ':16:8'
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


@pytest.mark.parametrize('value', [None, True, False])
def test_tf32_follows_env_cfg(value):
    saved = (torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32)
    cfg = Config(dict(env_cfg={} if value is None else dict(
        allow_tf32=value)))
    try:
        dev.apply_cuda_settings(cfg)
        want = value is not False  # on unless the config says False
        assert torch.backends.cuda.matmul.allow_tf32 is want
        assert torch.backends.cudnn.allow_tf32 is want
    finally:
        (torch.backends.cuda.matmul.allow_tf32,
         torch.backends.cudnn.allow_tf32) = saved


def test_no_config_forces_gloo():
    """nccl (the toolkits' default) on GPUs; `import mmcvt` switches to gloo
    where there is no accelerator (test_train_tools: two CPU processes)."""
    forced = []
    for path in sorted(glob.glob(osp.join(ROOT, 'configs', '**', '*.py'),
                                 recursive=True)):
        with open(path) as f:
            if 'gloo' in f.read():
                forced.append(osp.relpath(path, ROOT))
    assert forced == []
    cfg = Config.fromfile(osp.join(ROOT, 'configs/demo/cvt-tiny_digits.py'))
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'
