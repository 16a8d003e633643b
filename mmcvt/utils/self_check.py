# Copyright (c) mmcvt contributors. All rights reserved.
"""The hardware self-check (``tools/analysis/self_check.py``): on the
device at hand, does mmcvt compute the official formulation's numbers, and
which precision pays?

Checks, each a section of the report:

- ``fast_paths``: every fast path against the reference path
  (``set_fused(False)``), in fp32, and under fp16 and bf16 autocast: the
  outputs, all gradients and the BatchNorm running statistics of a training
  step, and the eval outputs, as relative errors
  ``||fast - reference|| / ||reference||`` against :data:`TOLERANCES`;
- ``sdpa``: which attention kernel each stage runs (flash,
  memory-efficient, cuDNN, math, or mmcvt's explicit chunked attention) at
  the head sizes of the published archs, in inference and training;
- ``amp``: training steps under fp16 autocast with a ``GradScaler`` stay
  finite;
- ``with_cp``: activation checkpointing gives the plain step's outputs,
  gradients and statistics;
- ``compile``: ``torch.compile(fullgraph=True)`` gives eager's outputs and
  gradients (no graph break, or it fails);
- ``precision``: the matmul rate and the model's speed in fp32 (and TF32 on
  GPUs that have it), bf16 and fp16, and which of them is fastest here;
- ``vs_transformers``: ``tools/analysis/benchmark.py`` against the
  ``transformers`` CvT (optional: skipped where it is not installed).

Correctness checks pass or fail; timings are information.
"""
import contextlib
import copy
import json
import math
import os
import platform
import statistics
import time
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcvt.models.layers import torch_internals
from .benchmark.report import device_name

__all__ = ['run', 'TOLERANCES', 'rel_err', 'SECTIONS']

SECTIONS = ('fast_paths', 'sdpa', 'amp', 'with_cp', 'compile', 'precision',
            'vs_transformers')
# sections that pass or fail; the others inform, and an error there is
# reported as 'error' without failing the self-check
CORRECTNESS = ('fast_paths', 'amp', 'with_cp', 'compile')
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16,
          'fp16': torch.float16}
# ||fast - reference|| / ||reference|| allowed per dtype (outputs,
# gradients, statistics). Both paths compute the same function and differ
# in rounding only, as the two paths round in other places (folded
# weights, fused kernels): fp32 (TF32 off for the check) far under 1e-4;
# fp16 keeps 10 mantissa bits, bf16 7. Measured on a CPU with the CvT-13
# and --quick archs: fp32 <= 2e-6, fp16 <= 2e-3, bf16 <= 1.3e-2; the
# worst single gradient tensor, noisier, gets 4x (measured up to 4.7e-2 in
# bf16: a LayerNorm bias whose gradient nearly cancels).
TOLERANCES = {'fp32': 1e-4, 'fp16': 1e-2, 'bf16': 5e-2}
# a small CvT with every part of the published ones (class token, stride-2
# keys and values, several heads) for --quick
QUICK_ARCH = dict(embed_dims=[16, 32, 48], num_heads=[1, 2, 3],
                  depths=[1, 1, 2], drop_path_rates=[0., 0., 0.])
# the published archs' heads (64 channels each) and stage widths
SDPA_ARCHS = ('13', 'w24')


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """``||a - b|| / ||b||`` in float64 (inf if either is not finite)."""
    a, b = a.detach().double(), b.detach().double()
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return math.inf
    den = b.norm().item()
    num = (a - b).norm().item()
    return num / den if den > 0 else num


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _full_fp32():
    """TF32 off on CUDA for the duration (fp32 means fp32 in the checks)."""
    saved = (torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        (torch.backends.cuda.matmul.allow_tf32,
         torch.backends.cudnn.allow_tf32) = saved


def _autocast(device: torch.device, dtype: str):
    if dtype == 'fp32':
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[dtype])


def _randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Running statistics that are not the init's 0 / 1, so that an
    eval-mode fold that ignored them would show."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape,
                                             generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape,
                                           generator=g) + 0.5)


def build_backbone(arch, device: torch.device, seed: int = 0,
                   **kwargs) -> nn.Module:
    """A CvT with every stage's map out (the class token path included),
    seeded weights and non-trivial BatchNorm statistics."""
    from mmcvt.models import CvT
    torch.manual_seed(seed)
    n = len(CvT.arch_zoo[arch]['depths'] if isinstance(arch, str) else
            arch['depths'])
    kwargs.setdefault('drop_path_rate', 0.)
    model = CvT(arch, out_indices=tuple(range(n)), out_type='cls_token',
                **kwargs)
    model.init_weights()
    _randomise_bn(model, seed)
    return model.to(device)


def _loss(outs, weights) -> torch.Tensor:
    """A loss in which every output element counts with its own weight (a
    plain sum would hide errors that cancel)."""
    return sum((o.float() * w).sum() for o, w in zip(outs, weights))


def _bn_buffers(model: nn.Module) -> Dict[str, torch.Tensor]:
    return {n: b for n, b in model.named_buffers()
            if n.endswith(('running_mean', 'running_var'))}


def _compare(fast: nn.Module, ref: nn.Module, outs_f, outs_r,
             stats: bool = True, grads: bool = True) -> dict:
    """Worst relative errors of outputs, gradients and statistics, with the
    name of the worst gradient."""
    errs = dict(outputs=max(rel_err(a, b) for a, b in zip(outs_f, outs_r)))
    if grads:
        pairs = [(name, p.grad, q.grad) for (name, p), q in zip(
            fast.named_parameters(), ref.parameters())
                 if p.grad is not None or q.grad is not None]
        missing = [n for n, a, b in pairs if a is None or b is None]
        if missing:
            errs.update(gradients=math.inf,
                        worst_gradient=missing[0] + ' (no gradient)')
            return errs
        # all gradients as one vector: the pass criterion
        errs['gradients'] = rel_err(torch.cat([a.flatten() for _, a, _ in
                                               pairs]),
                                    torch.cat([b.flatten() for *_, b in
                                               pairs]))
        # the worst tensor, each measured against its own norm, or 1% of
        # the largest where its gradient is smaller (gradients that nearly
        # cancel, e.g. a shift that the next BatchNorm removes)
        norms = [b.double().norm().item() for *_, b in pairs]
        floor = 1e-2 * max(norms)
        errs['worst_gradient_error'], errs['worst_gradient'] = max(
            ((a.double() - b.double()).norm().item() / max(n, floor)
             if rel_err(a, b) < math.inf else math.inf, name)
            for (name, a, b), n in zip(pairs, norms))
    if stats:
        bf, br = _bn_buffers(fast), _bn_buffers(ref)
        errs['bn_statistics'] = max(
            (rel_err(bf[k], br[k]) for k in bf), default=0.)
    return errs


def _step_both(a: nn.Module, b: nn.Module, x: torch.Tensor,
               autocast=contextlib.nullcontext()) -> tuple:
    """A training forward of both models on ``x`` (under ``autocast``) and
    the backward of the same weighted loss; fp32 is full fp32."""
    with _full_fp32():
        with autocast:
            outs_a, outs_b = a.train()(x), b.train()(x)
        weights = [torch.randn_like(o, dtype=torch.float32) for o in outs_b]
        _loss(outs_a, weights).backward()
        _loss(outs_b, weights).backward()
    return outs_a, outs_b


# precisions whose matmul rate is under this share of fp32's are not timed
# in the model (fp16 on CPUs without native fp16; README, "Speed and memory")
SLOW_MATMUL = 0.05
# the worst single gradient tensor's allowance, in tolerances
WORST_TENSOR_FACTOR = 4


def _status(tol: float, *parts: dict) -> str:
    ok = all(v <= tol * (WORST_TENSOR_FACTOR if k == 'worst_gradient_error'
                         else 1)
             for part in parts for k, v in part.items()
             if isinstance(v, float))
    return 'pass' if ok else 'fail'


def check_fast_paths(device: torch.device, arch, size, batch: int,
                     dtypes: List[str]) -> List[dict]:
    """Fast paths against the reference path, per dtype: a training step
    (outputs, all gradients, BatchNorm statistics) and an eval forward."""
    rows = []
    h, w = size
    for dtype in dtypes:
        tol = TOLERANCES[dtype]
        fast = build_backbone(arch, device)
        ref = copy.deepcopy(fast).set_fused(False)
        torch.manual_seed(1)
        x = torch.randn(batch, 3, h, w, device=device)
        row = dict(dtype=dtype, tolerance=tol)
        try:
            outs_f, outs_r = _step_both(fast, ref, x, _autocast(device, dtype))
            row['train'] = _compare(fast, ref, outs_f, outs_r)
            with _full_fp32(), _autocast(device, dtype), torch.no_grad():
                outs_f, outs_r = fast.eval()(x), ref.eval()(x)
            row['eval'] = _compare(fast, ref, outs_f, outs_r, stats=False,
                                   grads=False)
            row['status'] = _status(tol, row['train'], row['eval'])
        except Exception as e:  # a dtype the device cannot run, say
            row.update(status='fail', error=f'{type(e).__name__}: {e}')
        rows.append(row)
    return rows


# the aten ops scaled_dot_product_attention dispatches to, by backend
_SDPA_OPS = {
    'aten::_scaled_dot_product_flash_attention_for_cpu': 'flash (CPU)',
    'aten::_scaled_dot_product_flash_attention': 'flash',
    'aten::_scaled_dot_product_efficient_attention': 'memory-efficient',
    'aten::_scaled_dot_product_cudnn_attention': 'cuDNN',
    'aten::_scaled_dot_product_fused_attention_overrideable': 'fused',
    'aten::_scaled_dot_product_attention_math': 'math',
}


def attention_kernels(model: nn.Module, x: torch.Tensor, dtype: str,
                      train: bool) -> Dict[str, int]:
    """The attention kernels one forward (and backward, with ``train``)
    runs, by name, with how many calls: the profiler's record of the ops
    ``F.scaled_dot_product_attention`` dispatched to, or mmcvt's explicit
    chunked attention (``baddbmm`` and ``softmax`` without SDPA)."""
    from torch.profiler import ProfilerActivity, profile
    device = x.device
    model.train(train)
    ctx = contextlib.nullcontext() if train else torch.no_grad()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with ctx, _autocast(device, dtype):
            outs = model(x)
        if train:
            sum(o.float().sum() for o in outs).backward()
        _sync(device)
    counts: Dict[str, int] = {}
    names = [e.name for e in prof.events()]
    for name in names:
        if name in _SDPA_OPS:
            counts[_SDPA_OPS[name]] = counts.get(_SDPA_OPS[name], 0) + 1
    if not counts and 'aten::baddbmm' in names:
        counts['explicit (mmcvt attention_chunked)'] = names.count(
            'aten::baddbmm')
    return counts


def check_sdpa(device: torch.device, archs, size, dtypes: List[str],
               batch: int = 2) -> List[dict]:
    rows = []
    for arch in archs:
        model = build_backbone(arch, device)
        heads = (model.arch_zoo[arch] if isinstance(arch, str) else
                 arch)['num_heads']
        dims = [s.embed_dims for s in model.specs]
        x = torch.randn(batch, 3, *size, device=device)
        for dtype in dtypes:
            for train in (False, True):
                row = dict(arch=str(arch) if isinstance(arch, str) else
                           'quick', dtype=dtype,
                           mode='train' if train else 'infer',
                           head_dims=[d // n for d, n in zip(dims, heads)])
                try:
                    row['kernels'] = attention_kernels(model, x, dtype,
                                                       train)
                    slow = device.type == 'cuda' and dtype != 'fp32' and (
                        'math' in row['kernels'])
                    row['status'] = 'warn' if slow else 'info'
                except Exception as e:
                    row.update(status='error',
                               error=f'{type(e).__name__}: {e}'[:2000])
                model.zero_grad(set_to_none=True)
                rows.append(row)
        del model
    return rows


def check_amp(device: torch.device, arch, size, batch: int,
              steps: int = 20) -> dict:
    """``steps`` training steps of a classifier under fp16 autocast with a
    ``GradScaler``: every loss, the final weights and the scale finite."""
    torch.manual_seed(0)
    model = nn.Module()
    model.backbone = build_backbone(arch, device)
    n = len(model.backbone.specs)
    model.backbone.out_indices = (n - 1, )
    model.head = nn.Linear(model.backbone.specs[-1].embed_dims, 10).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(device.type)
    x = torch.randn(batch, 3, *size, device=device)
    y = torch.randint(0, 10, (batch, ), device=device)
    losses, skipped = [], 0
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16):
            logits = model.head(model.backbone(x)[-1])
            loss = F.cross_entropy(logits.float(), y)
        scale = scaler.get_scale()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        skipped += scaler.get_scale() < scale
        losses.append(loss.item())
    finite = (all(math.isfinite(v) for v in losses) and all(
        torch.isfinite(p).all() for p in model.parameters()))
    status = 'pass' if finite and skipped < steps // 2 else 'fail'
    return dict(status=status, steps=steps, first_loss=losses[0],
                last_loss=losses[-1], skipped_steps=int(skipped),
                final_scale=scaler.get_scale(), finite=finite)


def check_with_cp(device: torch.device, arch, size, batch: int) -> dict:
    plain = build_backbone(arch, device)
    ckpt = build_backbone(arch, device, with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(batch, 3, *size, device=device)
    outs_c, outs_p = _step_both(ckpt, plain, x)
    errs = _compare(ckpt, plain, outs_c, outs_p)
    tol = TOLERANCES['fp32']
    return dict(status=_status(tol, errs), tolerance=tol, **errs)


def check_compile(device: torch.device, arch, size, batch: int) -> dict:
    eager = build_backbone(arch, device)
    model = copy.deepcopy(eager)
    x = torch.randn(batch, 3, *size, device=device)
    t0 = time.perf_counter()
    try:
        compiled = torch.compile(model, fullgraph=True)
        outs_c, outs_e = _step_both(compiled, eager, x)
        train = _compare(model, eager, outs_c, outs_e)
        with _full_fp32():
            with torch.no_grad():
                infer = _compare(model, eager, compiled.eval()(x),
                                 eager.eval()(x), stats=False, grads=False)
    except Exception as e:
        return dict(status='fail', error=f'{type(e).__name__}: {e}'[:2000])
    finally:
        torch.compiler.reset()
    tol = TOLERANCES['fp32']
    return dict(status=_status(tol, train, infer), tolerance=tol,
                train=train, eval=infer,
                seconds_with_compile=round(time.perf_counter() - t0, 1))


def _time_steps(steps: Dict[str, Callable[[], None]], device: torch.device,
                repeats: int, warmup: int = 2) -> Dict[str, float]:
    """Median seconds of each step, timed round-robin (fairer on a shared
    machine)."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    _sync(device)
    times: Dict[str, List[float]] = {k: [] for k in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            _sync(device)
            t0 = time.perf_counter()
            step()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def check_precision(device: torch.device, arch, size, batch: int,
                    repeats: int, matmul_size: int) -> dict:
    """Matmul rates and the model's speed per precision, and which one pays
    (fastest) for inference and for a training step."""
    from mmcvt.utils.benchmark.impls import MMCvTClassifier
    from mmcvt.utils.benchmark.measure import make_step, matmul_rate
    precisions = ['fp32', 'bf16', 'fp16']
    tf32 = device.type == 'cuda' and torch.cuda.get_device_capability(
        device)[0] >= 8
    if tf32:
        precisions.insert(1, 'tf32')
    rates = {}
    for p in precisions:
        allow = p == 'tf32'
        torch.backends.cuda.matmul.allow_tf32 = allow
        torch.backends.cudnn.allow_tf32 = allow
        try:
            rates[p] = matmul_rate(device, DTYPES['fp32' if p == 'tf32' else
                                                  p], matmul_size, 1.0)
        except Exception as e:
            rates[p] = f'{type(e).__name__}: {e}'
    torch.manual_seed(0)
    arch_name = arch if isinstance(arch, str) else None
    if arch_name is None:  # QUICK_ARCH in the benchmark's terms
        arch_name = 'tiny'
    model = MMCvTClassifier(arch_name).to(device)
    x = torch.randn(batch, 3, *size, device=device)
    labels = torch.randint(0, 1000, (batch, ), device=device)
    speed: Dict[str, Dict[str, float]] = {}
    for mode in ('infer', 'train'):
        steps, models = {}, {}
        for p in precisions:
            models[p] = copy.deepcopy(model)
            step, _ = make_step(models[p], mode, x, labels, device,
                                'fp32' if p == 'tf32' else p)
            steps[p] = _with_tf32(step, p == 'tf32')
        ok = {}
        for p, step in steps.items():
            rate, base = rates.get(p), rates.get('fp32')
            if (isinstance(rate, float) and isinstance(base, float)
                    and rate < SLOW_MATMUL * base):
                # emulated on this device: minutes a step, and no contest
                speed.setdefault(mode, {})[p] = (
                    f'not timed: its matmul runs at {rate / base:.1%} of '
                    'fp32 here')
                continue
            try:
                step()
                ok[p] = step
            except Exception as e:  # e.g. fp16 autocast on an old CPU
                speed.setdefault(mode, {})[p] = f'{type(e).__name__}: {e}'
        seconds = _time_steps(ok, device, repeats)
        for p, s in seconds.items():
            speed.setdefault(mode, {})[p] = batch / s
        del models, steps
    best = {mode: max((p for p, v in by.items() if isinstance(v, float)),
                      key=lambda p: by[p])
            for mode, by in speed.items()}
    ratios = {mode: {p: round(v / by['fp32'], 3) for p, v in by.items()
                     if isinstance(v, float) and isinstance(
                         by.get('fp32'), float)}
              for mode, by in speed.items()}
    apply_tf32_default()
    return dict(status='info', arch=str(arch_name), size=list(size),
                batch=batch, matmul_macs_per_s=rates, images_per_s=speed,
                vs_fp32=ratios, fastest=best)


def _with_tf32(step: Callable[[], None], on: bool) -> Callable[[], None]:
    def run():
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on
        step()

    return run


def apply_tf32_default() -> None:
    """TF32 as ``tools/train.py`` sets it (``env_cfg.allow_tf32=True``)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def check_vs_transformers(device: torch.device, arch: str, cls_size,
                          cls_batch: int,
                          dense_size, dense_batch: int, dtype: str,
                          repeats: int, json_dir: Optional[str]) -> dict:
    """``tools/analysis/benchmark.py`` runs: the classifier (inference and
    training step) and the dense backbone, against ``transformers``."""
    try:
        import transformers  # noqa: F401
    except ImportError:
        return dict(status='skip', reason='transformers is not installed '
                    '(pip install transformers==4.49.0 to compare)')
    from mmcvt.utils.benchmark import main as bench
    runs = {}
    common = ['--device', str(device), '--archs', arch, '--dtype', dtype,
              '--repeats', str(repeats), '--warmup', '2',
              '--matmul-seconds', '1', '--no-check']
    for task, size, batch in (('cls', cls_size, cls_batch),
                              ('dense', dense_size, dense_batch)):
        argv = common + ['--task', task, '--sizes', f'{size[0]}x{size[1]}',
                         '--batch-size', str(batch)]
        if json_dir:
            argv += ['--json', os.path.join(json_dir, f'bench_{task}.json')]
        report = bench(argv)
        rate = report['meta']['matmul_macs_per_s'][dtype]
        rows = {}
        for r in report['results']:
            ratios = r.get('vs_reference') or {}
            rows[f"{r['impl']} {r['mode']}"] = dict(
                status=r['status'],
                images_per_s=(r.get('images_per_s') or {}).get('median'),
                peak_mb=r.get('peak_mb'),
                speed_vs_transformers=ratios.get('throughput'),
                memory_vs_transformers=ratios.get('memory'),
                share_of_matmul_rate=(r['achieved_macs_per_s'] / rate
                                      if r.get('achieved_macs_per_s') else
                                      None))
        runs[task] = dict(size=list(size), batch=batch, rows=rows,
                          matmul_macs_per_s=rate)
    return dict(status='info', dtype=dtype, runs=runs, goals=_goals(runs))


def _goals(runs: dict) -> dict:
    """The GPU goals of docs/benchmark.md, as measured here: a training
    step >= 2x transformers, >= 40% of the matmul rate, and the dense
    training step at <= 0.2x transformers' memory."""
    cls = runs['cls']['rows'].get('mmcvt train', {})
    dense = runs['dense']['rows'].get('mmcvt train', {})
    measured = dict(
        train_speed_vs_transformers=(cls.get('speed_vs_transformers'), 2.0,
                                     'min'),
        train_share_of_matmul_rate=(cls.get('share_of_matmul_rate'), 0.4,
                                    'min'),
        dense_train_memory_vs_transformers=(
            dense.get('memory_vs_transformers'), 0.2, 'max'))
    return {k: dict(value=v, goal=g, met=None if v is None else
                    (v >= g if kind == 'min' else v <= g))
            for k, (v, g, kind) in measured.items()}


def environment(device: torch.device) -> dict:
    env = dict(torch=torch.__version__, cuda=torch.version.cuda,
               python=platform.python_version(), device=str(device),
               threads=torch.get_num_threads())
    if device.type == 'cuda':
        props = torch.cuda.get_device_properties(device)
        env.update(name=props.name, capability='.'.join(
            map(str, torch.cuda.get_device_capability(device))),
            memory_gib=round(props.total_memory / 2**30, 1),
            multiprocessors=props.multi_processor_count,
            cudnn=torch.backends.cudnn.version())
    else:
        env.update(name=device_name(device),
                   bf16_native=torch_internals.native_bf16_matmul())
    try:
        import mmcv.ops
        env['mmcv_ops_cuda'] = mmcv.ops.get_compiling_cuda_version()
    except Exception as e:  # mmcv is not needed for the checks
        env['mmcv_ops_cuda'] = f'unavailable ({type(e).__name__})'
    import mmcvt
    env['mmcvt'] = mmcvt.__version__
    return env


def run(device: str = 'cpu', sections=SECTIONS, quick: bool = False,
        arch: str = '13', size=(224, 224), batch: Optional[int] = None,
        bench_dtype: str = 'bf16', repeats: int = 5,
        dense_size=None, dense_batch: Optional[int] = None,
        json_dir: Optional[str] = None,
        log: Callable[[str], None] = print) -> dict:
    """Run the checks of ``sections`` on ``device`` and return the report.

    Args:
        device (str): ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.
        sections (Sequence[str]): Any of :data:`SECTIONS`.
        quick (bool): A small arch and small inputs everywhere (a smoke
            test; the numbers are not the published archs').
        arch (str): The arch of the correctness checks and timings.
        size (tuple): ``(H, W)`` of the classifier inputs.
        batch (int, optional): Batch of the timings. Defaults to 64 on a
            GPU, 8 on the CPU.
        bench_dtype (str): The autocast dtype of the comparison with
            ``transformers``.
        repeats (int): Timed repeats per measurement.
        dense_size (tuple, optional): ``(H, W)`` of the dense backbone
            timing. Defaults to 800x1333 on a GPU, 512x512 on the CPU
            (where ``transformers`` would need 13 GB an image at 800x1333).
        dense_batch (int, optional): Its batch. Defaults to 2 on a GPU, 1
            on the CPU.
        json_dir (str, optional): Where the benchmark writes its JSON.
        log (callable): Progress lines.
    """
    dev = torch.device(device)
    if dev.type == 'cuda':
        torch.cuda.set_device(dev)
    on_gpu = dev.type == 'cuda'
    batch = batch or (64 if on_gpu else 8)
    dense_size = tuple(dense_size or ((800, 1333) if on_gpu else (512, 512)))
    dense_batch = dense_batch or (2 if on_gpu else 1)
    matmul_size = 4096 if on_gpu else 2048
    check_arch = QUICK_ARCH if quick else arch
    small = (64, 48) if quick else tuple(size)
    small_batch = 2 if quick else (8 if on_gpu else 2)
    sdpa_archs = [QUICK_ARCH] if quick else list(SDPA_ARCHS)
    if quick:
        size, batch, dense_size, dense_batch = (64, 48), 2, (96, 128), 1
        repeats, matmul_size = min(repeats, 2), 512
    report = dict(environment=environment(dev), checks={})
    dtypes = list(DTYPES)

    def section(name: str, fn: Callable[[], object]) -> None:
        if name not in sections:
            return
        log(f'[self-check] {name} ...')
        t0 = time.perf_counter()
        try:
            result = fn()
        except Exception as e:
            result = dict(status='fail' if name in CORRECTNESS else 'error',
                          error=f'{type(e).__name__}: {e}'[:2000])
        report['checks'][name] = result
        log(f'[self-check] {name}: {summary(name, result)} '
            f'({time.perf_counter() - t0:.0f} s)')

    section('fast_paths', lambda: check_fast_paths(dev, check_arch, small,
                                                   small_batch, dtypes))
    section('sdpa', lambda: check_sdpa(dev, sdpa_archs, small, dtypes))
    section('amp', lambda: check_amp(dev, check_arch, small, small_batch))
    section('with_cp', lambda: check_with_cp(dev, check_arch, small,
                                             small_batch))
    section('compile', lambda: check_compile(dev, check_arch, small,
                                             small_batch))
    section('precision', lambda: check_precision(
        dev, check_arch, size, batch, repeats, matmul_size))
    section('vs_transformers', lambda: check_vs_transformers(
        dev, 'tiny' if quick else arch, size, batch, dense_size, dense_batch,
        bench_dtype, repeats, json_dir))
    statuses = [statuses_of(r) for r in report['checks'].values()]
    report['passed'] = not any('fail' in s for s in statuses)
    return report


def statuses_of(result) -> List[str]:
    rows = result if isinstance(result, list) else [result]
    return [r.get('status', 'info') for r in rows]


def summary(name: str, result) -> str:
    """One line: pass / fail counts, or the section's main figures."""
    s = statuses_of(result)
    if name == 'precision' and isinstance(result, dict) and 'fastest' in \
            result:
        return ('fastest: ' + ', '.join(
            f'{mode} {p} ({result["vs_fp32"][mode].get(p, 1.0):.2f}x fp32)'
            for mode, p in result['fastest'].items()))
    if isinstance(result, dict) and result.get('status') in ('error',
                                                              'skip'):
        why = result.get('error') or result.get('reason')
        return f"{result['status']}: {why}"
    if name == 'vs_transformers' and 'goals' in result:
        return '; '.join(
            f"{k} {v['value']:.2f} (goal {v['goal']}: "
            f"{'met' if v['met'] else 'not met'})"
            for k, v in result['goals'].items() if v['value'] is not None)
    if name == 'sdpa' and isinstance(result, list):
        return '; '.join(
            f"{r['arch']} {r['dtype']} {r['mode']}: " +
            ', '.join(r.get('kernels', {}) or [r.get('error', '?')])
            for r in result)
    counts = {k: s.count(k) for k in ('pass', 'fail', 'error', 'warn', 'skip')
              if s.count(k)}
    return ', '.join(f'{v} {k}' for k, v in counts.items()) or 'info'


def write(report: dict, path: str) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    with open(path, 'w') as f:
        json.dump(report, f, indent=1, default=str)
