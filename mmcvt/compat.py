"""Fixes that make mmengine 0.10.7 and friends work on torch 2.14.

Applied once by ``import mmcvt`` (never by editing installed packages):

- **Resuming Runner checkpoints.** torch >= 2.6 loads with
  ``weights_only=True`` by default and mmengine calls ``torch.load`` without
  the argument. Rather than turning ``weights_only`` off for everyone, the few
  non-tensor types an mmengine checkpoint holds (numpy arrays/scalars/dtypes
  and the message hub's ``HistoryBuffer``) are registered as safe globals, and
  ``HistoryBuffer`` no longer pickles its class-level statistics methods (bound
  through ``builtins.getattr``, which a safe unpickler must never allow).
  Checkpoints written before this fix still contain ``getattr``; loading one
  with :func:`load_checkpoint_file` (the torch-file reader that
  :mod:`mmcvt.checkpoint` registers with mmengine) fails with a message that
  names ``MMCVT_TRUST_CHECKPOINTS=1``, the explicit opt-in to a full unpickle
  for files the user trusts.
- **``pkg::`` config bases** (``mmpretrain::``, ``mmdet::``, ``mmseg::``) are
  located with ``importlib`` instead of ``pkg_resources``, which recent
  setuptools removed and which is slow to import.
- **``AmpOptimWrapper`` on a machine without an accelerator** raises a clear
  error instead of a bare assert.
- **Distributed training on CPU** (``tools/dist_train.sh`` without GPUs):
  mmengine calls ``torch.cuda.set_device`` and wraps the model in DDP with
  ``device_ids``; without CUDA the process group uses gloo instead of nccl
  and DDP gets no ``device_ids``; ``sync_bn`` in a config (SyncBatchNorm
  works on GPUs only) is skipped with a warning. "No accelerator" is
  decided by mmengine's own device helpers (CUDA, NPU, MLU, MUSA; MPS has no
  distributed backend); NVIDIA GPUs that torch cannot use are an error, not
  a reason to train on the CPU (``mmcvt.utils.device``).
- **Atomic checkpoints.** The Runner's checkpoints are written to a
  temporary file in the work dir, flushed to disk and renamed into place:
  a crash while saving leaves the previous checkpoint whole, never a torn
  file under the checkpoint's name.
- **An image that cannot be read** (an empty file stops OpenCV with
  ``!buf.empty()``) is named in the error, with its size (mmcv 2.1.0's
  ``LoadImageFromFile``, patched when mmcv is imported).
- **The best checkpoint of a resumed run** is looked for in this work dir:
  a work dir copied or moved after training no longer deletes the old
  folder's best checkpoint when a new best comes.

Each fix names the mmengine versions it was written for and is skipped with
a warning on any other version; applying them twice changes nothing.
"""
import functools
import importlib.metadata
import importlib.util
import os
import os.path as osp
import pickle
import re
import warnings
from typing import Callable, Optional

import numpy as np
import torch

_APPLIED = False
TRUST_ENV = 'MMCVT_TRUST_CHECKPOINTS'
# the mmengine releases the fixes below were written for and tested with
SUPPORTED_MMENGINE = ('0.10.7', )
_MARK = '_mmcvt_patched'


def _patched(original: Callable) -> Callable:
    """Decorator for a replacement of ``original``: marks it, so that a fix
    applied twice does not wrap its own replacement."""

    def wrap(fn: Callable) -> Callable:
        functools.update_wrapper(fn, original)
        setattr(fn, _MARK, True)
        return fn

    return wrap


def _is_patched(fn) -> bool:
    return getattr(fn, _MARK, False)


def _distributed_accelerator() -> Optional[str]:
    """The accelerator mmengine trains on (``'cuda'``, ``'npu'``, ``'mlu'``,
    ``'musa'``), or None when there is none it can run distributed or AMP
    training on (CPU only, or Apple MPS)."""
    from mmengine.device import get_device
    device = get_device()
    return None if device in ('cpu', 'mps') else device


def _numpy_safe_globals() -> list:
    """The numpy objects that arrays, scalars and dtypes pickle through."""
    core = getattr(np, '_core', None) or np.core
    items = [np.ndarray, np.dtype, core.multiarray._reconstruct,
             core.multiarray.scalar]
    # numpy >= 1.25 pickles each dtype by its class (np.dtypes.Float64DType)
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        items += [
            getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')
        ]
    return items


def load_checkpoint_file(filename: str, map_location=None) -> dict:
    """``torch.load`` with the safe loader (``weights_only=True``), or a full
    unpickle when ``MMCVT_TRUST_CHECKPOINTS=1``, with errors that say what is
    wrong with the file.

    Raises:
        FileNotFoundError: If there is no such file.
        pickle.UnpicklingError: If the file is a checkpoint holding Python
            objects the safe loader refuses (the message names the opt-in).
        ValueError: If the file is not a readable PyTorch checkpoint
            (empty, truncated, corrupted or another kind of file).
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    trusted = os.environ.get(TRUST_ENV) == '1'
    try:
        return torch.load(filename, map_location=map_location,
                          weights_only=not trusted)
    except pickle.UnpicklingError as e:
        # the safe unpickler names the global it refused; anything else it
        # says is about bytes that are not a pickle at all
        blocked = _BLOCKED_GLOBAL.search(str(e))
        if not trusted and blocked:
            # a function torch never lets a checkpoint call (os.system,
            # eval, ...): the file would run code when loaded
            raise pickle.UnpicklingError(
                f'{filename} is unsafe: loading it would call '
                f'{blocked.group(1)}, which no checkpoint needs, and the safe '
                f'loader refused it (torch: "{blocked.group(0)}"). Nothing '
                'was loaded. Do not load this file with a full unpickle '
                f'({TRUST_ENV}=1 or weights_only=False); get the checkpoint '
                'from a source you trust.') from None
        refused = _REFUSED_GLOBAL.search(str(e))
        if not trusted and refused:
            raise pickle.UnpicklingError(
                f'{filename} holds Python objects that the safe loader '
                f'(torch.load weights_only=True) refuses '
                f'({refused.group(1)}); checkpoints saved by mmcvt load '
                f'safely, this one was probably written elsewhere. If it '
                f'comes from a source you trust and holds harmless classes '
                f'of your own, set {TRUST_ENV}=1 to load it with a full '
                f'unpickle.') from None
        # torch's message suggests weights_only=False, which cannot read
        # bytes that are no checkpoint either: keep only what it found
        raise _unreadable(filename, e) from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError,
            IndexError, TypeError, AttributeError) as e:
        raise _unreadable(filename, e) from e


# torch's safe loader: a global on its block list (a module such as os or
# subprocess), and one that is merely not allowed (a custom class)
_BLOCKED_GLOBAL = re.compile(
    r'unsupported GLOBAL (\S+) whose module \S+ is blocked', re.IGNORECASE)
_REFUSED_GLOBAL = re.compile(r'Unsupported global: GLOBAL (\S+)')


def _unreadable(filename: str, error: Exception) -> ValueError:
    size = osp.getsize(filename)
    text = str(error)
    # the safe unpickler's own finding, without torch's general advice
    text = text.split('WeightsUnpickler error:', 1)[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    detail = lines[0] if lines else 'no detail'
    return ValueError(
        f'{filename} ({size:,} bytes) is not a readable PyTorch checkpoint: '
        'it is empty, truncated, corrupted or another kind of file '
        f'({type(error).__name__}: {detail}). Download or save it again; a '
        'file written by torch.save loads.')


def _patch_checkpoint_loading() -> None:
    from mmengine.logging.history_buffer import HistoryBuffer

    torch.serialization.add_safe_globals(_numpy_safe_globals() +
                                         [HistoryBuffer])

    if not _is_patched(getattr(HistoryBuffer, '__getstate__', None)):

        @_patched(getattr(HistoryBuffer, '__getstate__', object.__getstate__))
        def __getstate__(self) -> dict:
            # The default statistics are restored by ``__setstate__`` and
            # custom ones are registered on the class at import time, so
            # leave them out.
            return {k: v for k, v in self.__dict__.items()
                    if k != 'statistics_methods'}

        HistoryBuffer.__getstate__ = __getstate__



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
    from mmengine.optim import AmpOptimWrapper

    original: Callable = AmpOptimWrapper.__init__
    if _is_patched(original):
        return

    @_patched(original)
    def __init__(self, *args, **kwargs):
        if _distributed_accelerator() is None:
            raise RuntimeError(
                'Mixed precision training (AmpOptimWrapper, `--amp`) needs '
                'a GPU/NPU/MLU/MUSA device and none is available here. '
                'Train in fp32 instead: drop `--amp`, or set '
                "optim_wrapper.type='OptimWrapper' in the config.")
        original(self, *args, **kwargs)

    AmpOptimWrapper.__init__ = __init__


def _patch_cpu_distributed() -> None:
    import mmengine.dist.utils as dist_utils
    import mmengine.runner.runner as runner_mod
    from mmengine.logging import print_log
    from mmengine.model import MMDistributedDataParallel

    original_init_dist: Callable = dist_utils._init_dist_pytorch
    if not _is_patched(original_init_dist):

        @_patched(original_init_dist)
        def _init_dist_pytorch(backend, init_backend='torch', **kwargs):
            if _distributed_accelerator() or init_backend != 'torch':
                return original_init_dist(backend, init_backend, **kwargs)
            # GPUs that torch cannot use (e.g. a driver too old for its
            # CUDA) stop the job instead of training N CPU processes
            from mmcvt.utils.device import check_gpus_usable
            check_gpus_usable()
            if backend == 'nccl':
                backend = 'gloo'  # nccl needs GPUs
            torch.distributed.init_process_group(backend=backend, **kwargs)

        dist_utils._init_dist_pytorch = _init_dist_pytorch

    original_ddp_init: Callable = MMDistributedDataParallel.__init__
    if not _is_patched(original_ddp_init):

        @_patched(original_ddp_init)
        def __init__(self, module, *args, **kwargs):
            if all(p.device.type == 'cpu' for p in module.parameters()):
                # DDP accepts device_ids only for modules on accelerators
                kwargs.pop('device_ids', None)
                kwargs.pop('output_device', None)
            original_ddp_init(self, module, *args, **kwargs)

        MMDistributedDataParallel.__init__ = __init__

    original_convert: Callable = runner_mod.convert_sync_batchnorm
    if not _is_patched(original_convert):

        @_patched(original_convert)
        def convert_sync_batchnorm(module, implementation='torch'):
            if _distributed_accelerator():
                return original_convert(module, implementation)
            print_log(
                'sync_bn is set but SyncBatchNorm needs GPUs; training on '
                'CPU keeps per-process BatchNorm.',
                logger='current',
                level=30)
            return module

        runner_mod.convert_sync_batchnorm = convert_sync_batchnorm


def _patch_atomic_checkpoints() -> None:
    import mmengine.runner.runner as runner_mod

    original: Callable = runner_mod.save_checkpoint
    if _is_patched(original):
        return

    @_patched(original)
    def save_checkpoint(checkpoint, filename, file_client_args=None,
                        backend_args=None):
        if ('://' in str(filename) or file_client_args is not None
                or backend_args is not None):
            return original(checkpoint, filename, file_client_args,
                            backend_args)
        save_atomically(checkpoint, filename)

    runner_mod.save_checkpoint = save_checkpoint


def _patch_best_checkpoint_in_work_dir() -> None:
    from mmengine.hooks import CheckpointHook

    original: Callable = CheckpointHook.before_train
    if _is_patched(original):
        return

    @_patched(original)
    def before_train(self, runner) -> None:
        original(self, runner)
        # a resumed checkpoint names the best one by its absolute path, which
        # in a copied or moved work dir is the old folder's file; the hook
        # deletes it when a new best comes: keep to this work dir's files
        if getattr(self, 'best_ckpt_path', None):
            self.best_ckpt_path = _in_out_dir(self, runner,
                                              self.best_ckpt_path)
        for key, path in (getattr(self, 'best_ckpt_path_dict', None)
                          or {}).items():
            if path:
                self.best_ckpt_path_dict[key] = _in_out_dir(self, runner, path)

    CheckpointHook.before_train = before_train


def _in_out_dir(hook, runner, path: str) -> Optional[str]:
    """``path`` if it is in the hook's checkpoint folder, else the file of
    its name there, else None (nothing of another folder is touched)."""
    out_dir = str(hook.out_dir)
    if '://' in out_dir or osp.realpath(osp.dirname(path)) == osp.realpath(
            out_dir):
        return path
    local = osp.join(out_dir, osp.basename(path))
    runner.logger.info(
        f'The best checkpoint recorded in the resumed checkpoint, {path}, is '
        f'not in {out_dir}: it is left alone'
        + (f'; {local} takes its place.' if osp.isfile(local) else '.'))
    return local if osp.isfile(local) else None


# the mmcv release the image-loading fix was written for
SUPPORTED_MMCV = ('2.1.0', )


def _patch_image_loading() -> None:
    # mmcv is optional for mmcvt: patched when (and if) it is imported
    from .model_zoo import when_imported
    when_imported('mmcv.transforms.loading', _name_unreadable_images)


def _name_unreadable_images(module) -> None:
    cls = module.LoadImageFromFile
    original: Callable = cls.transform
    # (mmcv itself may be half imported here: its metadata, not mmcv)
    if (_is_patched(original)
            or importlib.metadata.version('mmcv') not in SUPPORTED_MMCV):
        return

    @_patched(original)
    def transform(self, results: dict):
        try:
            return original(self, results)
        except Exception as e:
            path = str(results.get('img_path', ''))
            if not path or path in str(e):
                raise
            size = (f'{osp.getsize(path):,} bytes' if osp.isfile(path) else
                    'no such file')
            first = (str(e).strip().splitlines() or [''])[0]
            # an empty file stops cv2 with "!buf.empty()" and no name
            raise OSError(f'could not read the image {path} ({size}): '
                          f'{type(e).__name__}: {first}') from e

    cls.transform = transform


def save_atomically(obj, filename: str) -> None:
    """``torch.save`` that never leaves a torn file under ``filename``:
    written to a temporary file in the same folder, flushed to disk, then
    renamed over it (a crash leaves the previous file whole)."""
    folder = osp.dirname(osp.abspath(filename))
    tmp = osp.join(folder, f'.{osp.basename(filename)}.{os.getpid()}.tmp')
    try:
        with open(tmp, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filename)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    try:  # the rename itself, on disk
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# (name, fix): each is written for SUPPORTED_MMENGINE
_FIXES = (
    ('checkpoint loading', _patch_checkpoint_loading),
    ('pkg:: config bases', _patch_package_utils),
    ('AmpOptimWrapper without accelerator', _patch_amp_optim_wrapper),
    ('distributed training on CPU', _patch_cpu_distributed),
    ('atomic checkpoints', _patch_atomic_checkpoints),
    ('best checkpoint kept to the work dir',
     _patch_best_checkpoint_in_work_dir),
    ('unreadable images named', _patch_image_loading),
)


def apply(force: Optional[bool] = False) -> None:
    """Apply every compatibility fix once (idempotent: ``force`` re-checks
    them, and a fix already in place is not applied again).

    Fixes are applied only to the mmengine versions in
    :data:`SUPPORTED_MMENGINE`; on any other version each is skipped with a
    warning that names it.
    """
    global _APPLIED
    if _APPLIED and not force:
        return
    import mmengine
    version = mmengine.__version__
    if version not in SUPPORTED_MMENGINE:
        warnings.warn(
            f'mmcvt: mmengine {version} is not a version its compatibility '
            f'fixes were written for ({", ".join(SUPPORTED_MMENGINE)}); '
            'skipped: ' + ', '.join(name for name, _ in _FIXES) +
            '. Install the pinned versions with tools/setup_env.sh, or check'
            ' that this mmengine needs none of them.',
            stacklevel=2)
    else:
        for _, fix in _FIXES:
            fix()
    _APPLIED = True
