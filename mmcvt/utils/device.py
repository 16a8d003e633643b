# Copyright (c) mmcvt contributors. All rights reserved.
"""The device a run gets, decided before the Runner is built: GPUs that are
there but that torch cannot use stop the run (instead of training on the
CPU in silence), and the CUDA settings the config asks for are applied
while CUDA is not yet initialised.

Entry points: :func:`check_gpus_usable` and :func:`apply_cuda_settings`
(both called by ``mmcvt.cli.build_runner``, so by ``tools/train.py`` and
``tools/test.py``).
"""
import os
import shutil
import subprocess
from typing import Optional

import torch

__all__ = [
    'nvidia_gpus', 'gpus_hidden', 'unusable_gpus_message',
    'check_gpus_usable', 'apply_cuda_settings', 'CUBLAS_DETERMINISTIC'
]

# where the NVIDIA kernel driver lists the GPUs it drives
NVIDIA_PROC_GPUS = '/proc/driver/nvidia/gpus'
# the oldest Linux driver of each CUDA major version (CUDA's release notes)
MIN_DRIVER = {'13': '580.65.06', '12': '525.60.13'}
# cuBLAS is deterministic with a fixed workspace (torch's reproducibility
# notes); torch refuses cuBLAS calls under use_deterministic_algorithms
# without it
CUBLAS_DETERMINISTIC = ':4096:8'


def gpus_hidden() -> bool:
    """Whether the GPUs are hidden on purpose: ``CUDA_VISIBLE_DEVICES`` set
    to nothing (or ``-1``), the usual way to run on the CPU."""
    value = os.environ.get('CUDA_VISIBLE_DEVICES')
    return value is not None and value.strip() in ('', '-1')


def nvidia_gpus() -> int:
    """How many NVIDIA GPUs the driver reports on this machine: the entries
    of ``/proc/driver/nvidia/gpus``, else the lines of ``nvidia-smi -L``;
    0 where neither reports any."""
    try:
        n = len(os.listdir(NVIDIA_PROC_GPUS))
    except OSError:
        n = 0
    if n or shutil.which('nvidia-smi') is None:
        return n
    try:
        out = subprocess.run(['nvidia-smi', '-L'], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith('GPU ') for line in out.splitlines())


def _cuda_init_error() -> str:
    """Why torch cannot use CUDA, in torch's own words."""
    try:
        torch.cuda.init()
    except Exception as e:  # torch raises RuntimeError or AssertionError
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        return lines[0] if lines else type(e).__name__
    return 'torch.cuda.is_available() is False'


def unusable_gpus_message() -> Optional[str]:
    """A message naming the GPUs of this machine that torch cannot use, and
    what to do; None when torch can use them, when there are none, or when
    they are hidden on purpose (:func:`gpus_hidden`)."""
    if gpus_hidden() or torch.cuda.is_available():
        return None
    n = nvidia_gpus()
    if not n:
        return None
    cuda = torch.version.cuda
    if cuda is None:
        fix = ('this torch is a CPU build: install a CUDA build of torch '
               '(bash tools/setup_env.sh does)')
    else:
        major = cuda.split('.')[0]
        fix = (f'torch is built for CUDA {cuda}, which needs NVIDIA driver >= '
               f'{MIN_DRIVER.get(major, "a newer one")}: update the driver '
               "(nvidia-smi shows the driver's version and the newest CUDA "
               'it supports), or install a torch build for the CUDA version '
               'the driver supports (README, "On GPUs")')
    return (f'This machine has {n} NVIDIA GPU(s), but torch '
            f'{torch.__version__} cannot use them ({_cuda_init_error()}), so '
            f'this run would train or test on the CPU. {fix[0].upper()}'
            f'{fix[1:]}. To run on the CPU on purpose, hide the GPUs: '
            'CUDA_VISIBLE_DEVICES= (empty).')


def check_gpus_usable() -> None:
    """Raise if this machine has GPUs that torch cannot use (see
    :func:`unusable_gpus_message`)."""
    message = unusable_gpus_message()
    if message:
        raise RuntimeError(message)


def apply_cuda_settings(cfg) -> None:
    """The CUDA settings of a config, applied before CUDA is initialised:

    - ``randomness.deterministic=True``: ``CUBLAS_WORKSPACE_CONFIG`` (if not
      set already), without which torch refuses every cuBLAS call once
      mmengine turns on ``torch.use_deterministic_algorithms``;
    - ``env_cfg.allow_tf32`` (default True): TF32 matrix products and
      convolutions in fp32 on GPUs that have it (Ampere and newer), about
      8x the fp32 rate at a 10-bit mantissa; ``False`` keeps full fp32.
    """
    randomness = cfg.get('randomness') or {}
    if randomness.get('deterministic'):
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', CUBLAS_DETERMINISTIC)
    allow_tf32 = bool((cfg.get('env_cfg') or {}).get('allow_tf32', True))
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    torch.backends.cudnn.allow_tf32 = allow_tf32
