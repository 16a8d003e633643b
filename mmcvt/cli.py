"""Command-line handling shared by ``tools/train.py`` and ``tools/test.py``:
the launcher arguments, merging arguments into a config, building the
Runner and shutting the process group down."""
import argparse
import os
import os.path as osp
import sys
from typing import Sequence

from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmcvt.utils.data_check import check_data_roots
from mmcvt.utils.device import apply_cuda_settings, check_gpus_usable

__all__ = [
    'parse_with_launcher', 'merge_common_args', 'merge_args', 'build_runner',
    'enable_visualization', 'shutdown_distributed', 'latest_checkpoint',
    'check_training_state', 'load_for_testing', 'warn_unknown_options',
    'check_resume_fits'
]


def parse_with_launcher(parser: argparse.ArgumentParser,
                        argv=None) -> argparse.Namespace:
    """Adds ``--launcher`` and ``--local-rank`` (shared with tools/test.py)
    to ``parser`` and parses ``argv``."""
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def _dataloaders(cfg: Config):
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(name) is not None:
            yield cfg[name]


def merge_common_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Merge ``--cfg-options``, ``--launcher`` and ``--work-dir`` (shared
    with tools/test.py) into the config."""
    if args.cfg_options is not None:
        warn_unknown_options(cfg, args.cfg_options)
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher

    # work_dir: command line > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    return cfg


# top-level keys read although a config need not set them: mmengine
# Runner.from_cfg's and what the tools and mmengine read besides
_READ_KEYS = ('runner_type', 'custom_imports', 'sync_bn', 'tta_model',
              'tta_pipeline', 'work_dir', 'launcher')


def warn_unknown_options(cfg: Config, options: dict) -> None:
    """Warn about ``--cfg-options`` whose top-level key neither the config
    has nor mmengine's Runner reads (a typo such as ``randomnes.seed=5``
    would otherwise add a setting that nothing reads)."""
    import difflib
    import inspect
    import warnings
    known = set(cfg.keys()) | set(_READ_KEYS) | set(
        inspect.signature(Runner.__init__).parameters)
    for key in dict.fromkeys(k.split('.')[0] for k in options):
        if key in known:
            continue
        close = difflib.get_close_matches(key, sorted(known), n=1)
        hint = f' Did you mean {close[0]!r}?' if close else ''
        warnings.warn(
            f'--cfg-options {key}...: {key!r} is not a setting of this config '
            f'or of mmengine\'s Runner, so nothing will read it.{hint}',
            stacklevel=2)


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Merge the command line arguments into the config."""
    cfg = merge_common_args(cfg, args)

    if args.amp:
        optim_wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if optim_wrapper == 'AmpOptimWrapper':
            print('AMP is already enabled in the config.')
        else:
            if optim_wrapper != 'OptimWrapper':
                raise ValueError(
                    f'--amp replaces the optimizer wrapper with '
                    f'AmpOptimWrapper, but the config uses {optim_wrapper}. '
                    f'Set the wrapper in the config instead.')
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')

    if args.resume is not None:
        cfg.resume = True
        cfg.load_from = (latest_checkpoint(cfg.work_dir)
                         if args.resume == 'auto' else args.resume)
        if not osp.isfile(cfg.load_from):
            raise FileNotFoundError(
                f'--resume {args.resume}: no such checkpoint. Give a .pth '
                f'file, or --resume alone for the latest one in the work dir.')
        check_training_state(cfg.load_from)

    if args.auto_scale_lr:
        base = cfg.get('auto_scale_lr', {}).get('base_batch_size')
        if base is None:
            raise ValueError(
                '--auto-scale-lr needs `auto_scale_lr = dict('
                'base_batch_size=N)` in the config: the total batch size its '
                'learning rate was tuned for.')
        cfg.auto_scale_lr.enable = True

    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None

    for loader in _dataloaders(cfg):
        if args.no_pin_memory:
            loader['pin_memory'] = False
        # torch refuses persistent workers without worker processes
        if args.no_persistent_workers or loader.get('num_workers', 0) == 0:
            loader['persistent_workers'] = False
    return cfg


def latest_checkpoint(work_dir: str) -> str:
    """The checkpoint ``--resume`` without a path resumes: the one the work
    dir's ``last_checkpoint`` names. A work dir that was moved or copied
    still names the old absolute path: the file of that name in this work
    dir is taken (mmengine's own lookup would fail, or read the old
    folder's file).

    Raises:
        FileNotFoundError: If the work dir holds no checkpoint to resume.
    """
    record = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(record):
        raise FileNotFoundError(
            f'--resume: found no checkpoint to resume in the work dir '
            f'{osp.abspath(work_dir)} (it has no last_checkpoint file'
            f'{"" if osp.isdir(work_dir) else "; the folder does not exist"}'
            f'). Check --work-dir, give the checkpoint (--resume PATH), or '
            f'start without --resume.')
    with open(record) as f:
        named = f.read().strip()
    local = osp.join(work_dir, osp.basename(named))
    if osp.isfile(local) and _readable(local):
        return local
    # torn by a crash (or gone): the newest checkpoint that has training
    # state and loads
    candidates = sorted(
        (osp.join(work_dir, f) for f in os.listdir(work_dir)
         if f.endswith('.pth') and f != osp.basename(named)),
        key=osp.getmtime, reverse=True)
    for path in candidates:
        if _readable(path, need_state=True):
            print(f'--resume: {record} names {named}, which '
                  f'{"does not load" if osp.isfile(local) else "is not there"}'
                  f'; resuming from {path}, the newest checkpoint that does.',
                  file=sys.stderr)
            return path
    raise FileNotFoundError(
        f'--resume: {record} names {named}, which '
        f'{"does not load" if osp.isfile(local) else "is not there"}, and '
        f'the work dir has no other checkpoint to resume. Give the checkpoint '
        f'with --resume PATH.')


def _peek(checkpoint: str) -> tuple:
    """``(checkpoint, None)`` with its tensors memory-mapped (the keys are
    read, not the weights), or ``(None, the exception loading raised)``."""
    import torch
    try:
        return torch.load(checkpoint, map_location='cpu', mmap=True,
                          weights_only=True), None
    except Exception as e:
        return None, e


def _readable(path: str, need_state: bool = False) -> bool:
    """Whether ``path`` loads as a checkpoint (with the optimizer state,
    if ``need_state``)."""
    import pickle
    ckpt, error = _peek(path)
    if error is not None:
        # whole, with objects the safe loader refuses: the loader says so
        return (isinstance(error, pickle.UnpicklingError)
                and 'GLOBAL' in str(error) and not need_state)
    return not need_state or (isinstance(ckpt, dict) and 'optimizer' in ckpt)


def check_training_state(checkpoint: str) -> None:
    """Refuse to resume from a checkpoint without the optimizer's state
    (e.g. a best-so-far checkpoint, which mmengine saves with the weights
    only): resuming would restart the optimizer and the learning-rate
    schedule in silence."""
    ckpt, error = _peek(checkpoint)
    # one that does not load (torn, unsafe, ...): the loader will say why
    if error is not None or not isinstance(ckpt, dict) or \
            'state_dict' not in ckpt:
        return
    missing = [k for k in ('optimizer', 'message_hub') if k not in ckpt]
    if missing:
        raise ValueError(
            f'--resume {checkpoint}: it holds the model weights but no '
            f'training state ({" and ".join(missing)} missing; a best-so-far '
            f'checkpoint is saved that way), so the optimizer and the '
            f'learning-rate schedule would start over. Resume from a '
            f'periodic checkpoint (iter_N.pth / epoch_N.pth), or start a new '
            f'run from these weights with --cfg-options load_from={checkpoint}'
            f' (without --resume).')


def _model(runner: Runner):
    """The runner's model without its wrapper (DDP and the like)."""
    from mmengine.model import is_model_wrapper
    return runner.model.module if is_model_wrapper(
        runner.model) else runner.model


def load_for_testing(runner: Runner, checkpoint: str) -> None:
    """Load ``checkpoint`` into the runner's model for testing, and fail
    if it leaves parameters of the model unset (a checkpoint of another
    task or model: a detector's on a classifier, say), naming them: their
    random initialisation would give meaningless metrics.

    Every parameter is set to NaN first, so that what the checkpoint did
    not fill shows, whatever key conversion loading applied.
    """
    import torch
    params = dict(_model(runner).named_parameters())
    with torch.no_grad():
        for p in params.values():
            p.fill_(float('nan'))
    runner.load_checkpoint(checkpoint, map_location='cpu')
    with torch.no_grad():
        unset = [n for n, p in params.items() if torch.isnan(p).any()]
    if unset:
        parts = sorted({'.'.join(n.split('.')[:2]) for n in unset})
        raise RuntimeError(
            f'{checkpoint} leaves {len(unset)} of the model\'s '
            f'{len(params)} parameter tensors unset: {", ".join(parts)} '
            f'(e.g. {unset[0]}). It does not fit this config\'s model (a '
            f'checkpoint of another task or model?); testing would score '
            f'random weights. Give a checkpoint trained with this config.')


def check_resume_fits(runner: Runner, checkpoint: str) -> None:
    """Refuse to resume ``checkpoint`` into a model whose parameters
    changed shape since (e.g. ``model.head.num_classes`` changed): the
    weights would load only in part and the optimizer step crash on the
    restored state. Names the parameters."""
    ckpt, _ = _peek(checkpoint)  # one that does not load: the loader says
    saved = ckpt.get('state_dict') if isinstance(ckpt, dict) else None
    if not isinstance(saved, dict):
        return
    changed = [
        f'{name} {tuple(saved[name].shape)} -> {tuple(p.shape)}'
        for name, p in _model(runner).state_dict().items()
        if name in saved and hasattr(saved[name], 'shape')
        and tuple(saved[name].shape) != tuple(p.shape)
    ]
    if changed:
        raise ValueError(
            f'--resume {checkpoint}: {len(changed)} parameter(s) of the model '
            f'changed shape since that checkpoint ({"; ".join(changed[:5])}'
            f'{"; ..." if len(changed) > 5 else ""}), so its training state '
            f'cannot continue. To fine-tune from its weights with the new '
            f'shapes, start a new run with --cfg-options '
            f'load_from={checkpoint} (without --resume); the parameters of '
            f'another shape keep their initialisation.')


def enable_visualization(cfg: Config, show_dir: str) -> Config:
    """``--show-dir``: turn on the config's own visualization hook so that
    every test image is drawn with its predictions (mmpretrain's
    ``VisualizationHook``, mmdet's ``DetVisualizationHook``: one PNG file an
    image in ``show_dir``; mmseg's ``SegVisualizationHook``: in
    ``show_dir/vis_data/vis_image``). A relative ``show_dir`` is taken
    inside the work dir (mmpretrain and mmdet: inside its timestamped run
    folder, as their hooks do); call it after the work dir is set."""
    hook = cfg.get('default_hooks', {}).get('visualization')
    kind = hook['type'].split('.')[-1] if hook else None
    if kind == 'VisualizationHook':
        hook.update(enable=True, out_dir=show_dir, interval=1)
    elif kind == 'DetVisualizationHook':
        hook.update(draw=True, test_out_dir=show_dir)
    elif kind == 'SegVisualizationHook':
        hook.update(draw=True, interval=1)
        cfg.visualizer.save_dir = osp.join(cfg.get('work_dir') or '', show_dir)
    else:
        raise ValueError(
            f'--show-dir needs a visualization hook in the config\'s '
            f'default_hooks (mmpretrain VisualizationHook, mmdet '
            f'DetVisualizationHook or mmseg SegVisualizationHook); it has '
            f'{kind or "none"}. Inherit the toolkit\'s default_runtime or add '
            f'one.')
    return cfg


def build_runner(cfg: Config,
                 loaders: Sequence[str] = ('train_dataloader',
                                           'val_dataloader')) -> Runner:
    """The config's Runner, after the device checks and CUDA settings that
    must come before CUDA is initialised (:mod:`mmcvt.utils.device`), and
    the check that the data sets of ``loaders`` (the ones the run uses) are
    on disk."""
    check_gpus_usable()
    check_data_roots(cfg, cfg.filename or 'the config', loaders)
    apply_cuda_settings(cfg)
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)


def shutdown_distributed() -> None:
    """Destroy the process group before the interpreter exits: a gloo group
    left to interpreter teardown can abort a rank ("terminate called
    without an active exception") after a successful run."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
