"""Fixes that make mmengine 0.10.7 and friends work on torch 2.14.

Applied once by ``import mmcvt`` (never by editing installed packages):

- **Resuming Runner checkpoints.** torch >= 2.6 loads with ``weights_only=True``
  by default and mmengine calls ``torch.load`` without the argument. Rather
  than turning ``weights_only`` off for everyone, the few non-tensor types an
  mmengine checkpoint holds (numpy arrays/scalars/dtypes and the message hub's
  ``HistoryBuffer``) are registered as safe globals, and ``HistoryBuffer`` no
  longer pickles its class-level statistics methods (bound through
  ``builtins.getattr``, which a safe unpickler must never allow). Checkpoints
  written before this fix still contain ``getattr``; loading one fails with a
  message that names ``MMCVT_TRUST_CHECKPOINTS=1``, the explicit opt-in to a
  full unpickle for files the user trusts.
- **``pkg::`` config bases** (``mmpretrain::``, ``mmdet::``, ``mmseg::``) are
  located with ``importlib`` instead of ``pkg_resources``, which recent
  setuptools removed and which is slow to import.
- **``AmpOptimWrapper`` on a machine without an accelerator** raises a clear
  error instead of a bare assert.
- **Distributed training on CPU** (``tools/dist_train.sh`` without GPUs):
  mmengine calls ``torch.cuda.set_device`` and wraps the model in DDP with
  ``device_ids``; without CUDA the process group uses gloo instead of nccl
  and DDP gets no ``device_ids``; ``sync_bn`` in a config (SyncBatchNorm
  works on GPUs only) is skipped with a warning.
"""
import importlib.metadata
import importlib.util
import os
import os.path as osp
import pickle
from typing import Callable, Optional

import numpy as np
import torch

_APPLIED = False
TRUST_ENV = 'MMCVT_TRUST_CHECKPOINTS'


def _numpy_safe_globals() -> list:
    """The numpy objects that arrays, scalars and dtypes pickle through."""
    core = getattr(np, '_core', None) or np.core
    items = [np.ndarray, np.dtype, core.multiarray._reconstruct,
             core.multiarray.scalar]
    # numpy >= 1.25 pickles each dtype by its class (np.dtypes.Float64DType)
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        items += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    return items


def _patch_checkpoint_loading() -> None:
    from mmengine.logging.history_buffer import HistoryBuffer
    from mmengine.runner.checkpoint import CheckpointLoader

    torch.serialization.add_safe_globals(_numpy_safe_globals() +
                                         [HistoryBuffer])

    def __getstate__(self) -> dict:
        # The default statistics are restored by ``__setstate__`` and custom
        # ones are registered on the class at import time, so leave them out.
        return {k: v for k, v in self.__dict__.items()
                if k != 'statistics_methods'}

    HistoryBuffer.__getstate__ = __getstate__

    def load_from_local(filename: str, map_location=None) -> dict:
        filename = osp.expanduser(filename)
        if not osp.isfile(filename):
            raise FileNotFoundError(f'{filename} can not be found.')
        if os.environ.get(TRUST_ENV) == '1':
            return torch.load(filename, map_location=map_location,
                              weights_only=False)
        try:
            return torch.load(filename, map_location=map_location)
        except pickle.UnpicklingError as e:
            raise pickle.UnpicklingError(
                f'{filename} holds Python objects that the safe loader '
                f'(torch.load weights_only=True) refuses; checkpoints saved '
                f'by mmcvt load safely, this one was probably written '
                f'elsewhere. If you trust the file, set {TRUST_ENV}=1 to '
                f'load it with a full unpickle.\nOriginal error: {e}') from e

    CheckpointLoader.register_scheme(prefixes='', force=True)(load_from_local)


def _module_name(package: str) -> str:
    """Top-level module of a distribution (``mmsegmentation`` -> ``mmseg``)."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return package
    top_level = dist.read_text('top_level.txt')
    return top_level.split()[0] if top_level else package


def _find_spec(package: str):
    for name in (package, _module_name(package)):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            return spec
    return None


def _is_installed(package: str) -> bool:
    return _find_spec(package) is not None


def _get_installed_path(package: str) -> str:
    """Directory of an installed package, by distribution or module name."""
    spec = _find_spec(package)
    if spec is None:
        raise ModuleNotFoundError(
            f'{package} is not installed, so `{package}::` config bases '
            f'cannot be found. Install it (tools/setup_env.sh does).')
    return list(spec.submodule_search_locations)[0]


def _patch_package_utils() -> None:
    import mmengine.config.config as config_mod
    import mmengine.config.utils as config_utils
    import mmengine.utils as utils
    import mmengine.utils.package_utils as package_utils
    # let configs inherit ours as `mmcvt::cvt/cvt-13_imagenet.py`
    config_utils.MODULE2PACKAGE.setdefault('mmcvt', 'mmcvt')
    for mod in (utils, package_utils, config_mod, config_utils):
        if hasattr(mod, 'is_installed'):
            mod.is_installed = _is_installed
        if hasattr(mod, 'get_installed_path'):
            mod.get_installed_path = _get_installed_path


def _patch_amp_optim_wrapper() -> None:
    from mmengine.device import (is_cuda_available, is_mlu_available,
                                 is_musa_available, is_npu_available)
    from mmengine.optim import AmpOptimWrapper

    original: Callable = AmpOptimWrapper.__init__

    def __init__(self, *args, **kwargs):
        if not (is_cuda_available() or is_npu_available()
                or is_mlu_available() or is_musa_available()):
            raise RuntimeError(
                'Mixed precision training (AmpOptimWrapper, `--amp`) needs '
                'a GPU/NPU/MLU/MUSA device and none is available here. '
                'Train in fp32 instead: drop `--amp`, or set '
                "optim_wrapper.type='OptimWrapper' in the config.")
        original(self, *args, **kwargs)

    AmpOptimWrapper.__init__ = __init__


def _patch_cpu_distributed() -> None:
    import mmengine.dist.utils as dist_utils
    from mmengine.model import MMDistributedDataParallel

    original_init_dist: Callable = dist_utils._init_dist_pytorch

    def _init_dist_pytorch(backend, init_backend='torch', **kwargs) -> None:
        if torch.cuda.is_available() or init_backend != 'torch':
            return original_init_dist(backend, init_backend, **kwargs)
        if backend == 'nccl':
            backend = 'gloo'  # nccl needs GPUs
        torch.distributed.init_process_group(backend=backend, **kwargs)

    dist_utils._init_dist_pytorch = _init_dist_pytorch

    original_ddp_init: Callable = MMDistributedDataParallel.__init__

    def __init__(self, module, *args, **kwargs):
        on_cpu = all(p.device.type == 'cpu' for p in module.parameters())
        if on_cpu:
            # DDP accepts device_ids only for modules on accelerators
            kwargs.pop('device_ids', None)
            kwargs.pop('output_device', None)
        original_ddp_init(self, module, *args, **kwargs)

    MMDistributedDataParallel.__init__ = __init__

    import mmengine.runner.runner as runner_mod
    original_convert: Callable = runner_mod.convert_sync_batchnorm

    def convert_sync_batchnorm(module, implementation='torch'):
        if torch.cuda.is_available():
            return original_convert(module, implementation)
        from mmengine.logging import print_log
        print_log(
            'sync_bn is set but SyncBatchNorm needs GPUs; training on CPU '
            'keeps per-process BatchNorm.', logger='current', level=30)
        return module

    runner_mod.convert_sync_batchnorm = convert_sync_batchnorm


def apply(force: Optional[bool] = False) -> None:
    """Apply every compatibility fix once (idempotent)."""
    global _APPLIED
    if _APPLIED and not force:
        return
    _patch_checkpoint_loading()
    _patch_package_utils()
    _patch_amp_optim_wrapper()
    _patch_cpu_distributed()
    _APPLIED = True
