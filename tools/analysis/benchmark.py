#!/usr/bin/env python
# Copyright (c) mmcvt contributors. All rights reserved.
"""Speed / memory benchmark of mmcvt's CvT against the HuggingFace reference.

One run measures, on the SAME weights (a seeded, randomly initialised
``transformers.CvtForImageClassification`` whose state dict is converted with
``convert_hf_to_mmcvt`` and loaded into mmcvt), for every requested
implementation x arch x input size x mode:

* throughput (images/s; median over ``--repeats`` timed iterations after
  ``--warmup`` untimed ones, min and max reported too),
* peak memory of one iteration (see "Peak memory" below),
* multiply-accumulates per image (``torch.utils.flop_counter.FlopCounterMode``
  / 2: convolutions, linears / matmuls and attention) and the achieved MAC
  rate, against the machine's own large-matmul rate measured in the same run.

Modes: ``infer`` (eval mode, ``torch.inference_mode``) and ``train`` (one
full step: ``zero_grad`` + forward + cross entropy + backward + ``AdamW``
step). Under ``--dtype bf16 / fp16`` the forward (and loss) runs in
``torch.autocast``; the weights stay fp32 (mixed precision); fp16 training
uses a ``GradScaler``.

Implementations (``--impls``):

* ``hf``            transformers ``CvtForImageClassification`` (the reference,
                    exact GELU, as shipped)
* ``mmcvt``         ``mmcvt.CvT`` backbone (``out_type='cls_token'``) plus a
                    linear head (``head.fc``), i.e. the mmpretrain classifier
* ``mmcvt-deploy``  the same after ``switch_to_deploy()`` (BN folded into the
                    depth-wise convs; inference only)
* ``mmcvt-compile`` ``torch.compile`` of ``mmcvt`` (compile time is spent in
                    the warm-up)
* ``mmcvt-reference`` ``mmcvt`` with ``set_fused(False)``: the official
                    formulation step by step (explicit softmax attention,
                    QuickGELU, conv + BN), i.e. what the fast paths gain
* ``mmcvt-cp``      ``mmcvt`` with activation checkpointing per block
                    (``with_cp=True``): training memory for a second forward
* ``--impl-extra [NAME=]module:callable`` any other model; the callable gets
  the keyword arguments it accepts out of ``arch``, ``img_size``,
  ``num_classes``, ``hf_state_dict``, ``hf_config`` and ``device`` and returns
  an ``nn.Module`` mapping images ``(B, 3, S, S)`` to logits (or to anything
  whose tensors give a loss).

Peak memory:

``peak_delta_mb`` is the peak *increase* of allocated tensor memory during
one iteration (activations, temporaries, new gradients); ``peak_mb`` adds
the bytes of the model's tensors live at its start (parameters, buffers,
optimizer state, inputs; the previous gradients are released first, as the
step's ``zero_grad(set_to_none=True)`` does):

* CUDA: ``torch.cuda.max_memory_allocated()`` after
  ``reset_peak_memory_stats()``, minus ``memory_allocated()`` at the start.
* CPU: the PyTorch profiler's memory accounting (``profile_memory=True``):
  every allocation / free of the CPU tensor allocator during the iteration
  is recorded, the running sum's maximum is the peak increase. This counts
  tensor memory only (no allocator caching / fragmentation, no
  library-internal scratch that bypasses the PyTorch allocator), not RSS.

By default the implementations of one arch x size x mode are built
together and timed round-robin (fairer on a shared machine);
``--sequential`` builds and measures one at a time (less memory).

Examples::

    # the issue's goal setting (CPU, fp32, CvT-13 at 224, batch 32)
    python tools/analysis/benchmark.py --archs 13 --sizes 224 \
        --batch-size 32 --impls mmcvt hf --json work_dirs/bench.json
    # the full matrix on a GPU under bf16 autocast
    python tools/analysis/benchmark.py --device cuda --dtype bf16 \
        --archs 13 21 w24 --sizes 224 384 \
        --impls mmcvt mmcvt-deploy mmcvt-compile hf --json bench.json
"""
import os

# Silence the Kineto "profiler_start/stop" chatter of the CPU memory pass
# (6 is the level that mutes it in torch 2.14); must be set before torch is
# imported.
os.environ.setdefault('KINETO_LOG_LEVEL', '6')

import argparse  # noqa: E402
import copy  # noqa: E402
import datetime  # noqa: E402
import functools  # noqa: E402
import gc  # noqa: E402
import importlib  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from typing import Callable, Dict, List, Optional, Tuple  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

NUM_CLASSES = 1000
BUILTIN_IMPLS = ('mmcvt', 'mmcvt-deploy', 'mmcvt-compile',
                 'mmcvt-reference', 'mmcvt-cp', 'hf')
DTYPES = {
    'fp32': torch.float32,
    'bf16': torch.bfloat16,
    'fp16': torch.float16
}

# Architectures in HuggingFace ``CvtConfig`` terms and in mmcvt ``arch``
# terms. ``tiny`` is a small custom arch for smoke tests of this tool.
ARCHS = {
    '13': dict(embed_dim=[64, 192, 384], num_heads=[1, 3, 6],
               depth=[1, 2, 10]),
    '21': dict(embed_dim=[64, 192, 384], num_heads=[1, 3, 6],
               depth=[1, 4, 16]),
    'w24': dict(embed_dim=[192, 768, 1024], num_heads=[3, 12, 16],
                depth=[2, 2, 20]),
    # (transformers' CvtStage indexes its drop-path list by the stage index,
    # so stage i needs depth > i)
    'tiny': dict(embed_dim=[16, 32, 64], num_heads=[1, 2, 4],
                 depth=[1, 2, 3]),
}

MEMORY_METHOD = {
    'cuda': 'torch.cuda.max_memory_allocated over one iteration (after '
    'reset_peak_memory_stats) minus memory_allocated at its start '
    '(peak_delta) + bytes of the tensors of this model live at its start '
    '(params, buffers, grads, optimizer state, inputs)',
    'cpu': 'torch.profiler profile_memory=True: max of the running sum of '
    'CPU allocator alloc/free events over one iteration (peak_delta) + '
    'bytes of the tensors live at its start (params, buffers, grads, '
    'optimizer state, inputs); tensor memory only',
}
MAC_METHOD = ('torch.utils.flop_counter.FlopCounterMode / 2 on one fp32 '
              'image (convs, linears/matmuls, attention incl. SDPA; an '
              'attention backward counts 2x its forward, no recompute); '
              'infer: forward MACs, train: forward + backward MACs '
              '(optimizer excluded); achieved rate = MACs/image x images/s')

# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


def hf_config(arch: str, num_classes: int = NUM_CLASSES):
    """HuggingFace ``CvtConfig`` of an arch, without stochastic depth."""
    from transformers import CvtConfig
    a = ARCHS[arch]
    n = len(a['depth'])
    return CvtConfig(
        embed_dim=list(a['embed_dim']),
        num_heads=list(a['num_heads']),
        depth=list(a['depth']),
        drop_path_rate=[0.] * n,
        num_labels=num_classes)


def build_hf(arch: str, seed: int = 0, num_classes: int = NUM_CLASSES):
    """A seeded, randomly initialised ``CvtForImageClassification``."""
    from transformers import CvtForImageClassification
    torch.manual_seed(seed)
    model = CvtForImageClassification(hf_config(arch, num_classes))
    return model.eval()


def swap_quick_gelu(hf_model: nn.Module) -> nn.Module:
    """Replace the MLP activations of a HF CvT by QuickGELU in place (the
    official CvT / mmcvt activation), for output parity checks."""
    from mmcvt.models.backbones.cvt import QuickGELU
    for module in hf_model.modules():
        if type(module).__name__ == 'CvtIntermediate':
            module.activation = QuickGELU()
    return hf_model


class HFClassifier(nn.Module):
    """``CvtForImageClassification`` returning the logits tensor."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits


class MMCvTClassifier(nn.Module):
    """``mmcvt.CvT`` + linear head: the mmpretrain ``ImageClassifier`` with a
    ``LinearClsHead`` minus its data plumbing (same parameter names:
    ``backbone.*``, ``head.fc.*``)."""

    def __init__(self, arch: str, num_classes: int = NUM_CLASSES, **kwargs):
        super().__init__()
        from mmcvt.models.backbones.cvt import CvT
        a = ARCHS[arch]
        n = len(a['depth'])
        mm_arch = arch if arch in CvT.arch_zoo else dict(
            embed_dims=list(a['embed_dim']),
            num_heads=list(a['num_heads']),
            depths=list(a['depth']),
            drop_path_rates=[0.] * n)
        self.backbone = CvT(
            arch=mm_arch,
            out_indices=(n - 1, ),
            out_type='cls_token',
            drop_path_rate=[0.] * n,
            **kwargs)
        self.head = nn.Module()
        self.head.fc = nn.Linear(a['embed_dim'][-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.fc(self.backbone(x)[-1])


def build_mmcvt(arch: str, hf_state_dict: dict,
                num_classes: int = NUM_CLASSES) -> MMCvTClassifier:
    """mmcvt classifier loaded (strictly) with converted HF weights."""
    from mmcvt.models.backbones.cvt import convert_hf_to_mmcvt
    model = MMCvTClassifier(arch, num_classes)
    model.load_state_dict(convert_hf_to_mmcvt(hf_state_dict), strict=True)
    return model.eval()


def load_extra(spec: str) -> Tuple[str, Callable]:
    """``[NAME=]module:callable`` -> (name, callable)."""
    name, _, target = spec.rpartition('=')
    if ':' not in target:
        raise ValueError(f'--impl-extra expects [NAME=]module:callable, got '
                         f'"{spec}"')
    module_name, attr = target.split(':', 1)
    obj = importlib.import_module(module_name)
    for part in attr.split('.'):
        obj = getattr(obj, part)
    return name or target, obj


def call_extra(fn: Callable, **available) -> nn.Module:
    """Call a user factory with the keyword arguments it accepts."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return fn(**available)
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return fn(**available)
    return fn(**{k: v for k, v in available.items() if k in params})


class Context:
    """Per-arch shared state: the reference weights."""

    def __init__(self, arch: str, seed: int):
        self.arch = arch
        self.hf = build_hf(arch, seed)
        self.hf_state_dict = {
            k: v.detach().clone()
            for k, v in self.hf.state_dict().items()
        }
        self.hf_config = self.hf.config


def build_impl(impl: str, ctx: Context, size: int, device: torch.device,
               extras: Dict[str, Callable]) -> Tuple[nn.Module, nn.Module]:
    """(module to run, eager module for MAC counting), on ``device``."""
    if impl == 'hf':
        model = HFClassifier(copy.deepcopy(ctx.hf)).to(device)
        return model, model
    if impl.startswith('mmcvt') and impl in BUILTIN_IMPLS:
        model = build_mmcvt(ctx.arch, ctx.hf_state_dict).to(device)
        if impl == 'mmcvt-deploy':
            model.backbone.switch_to_deploy()
        if impl == 'mmcvt-reference':
            # the official formulation step by step, no fast paths
            model.backbone.set_fused(False)
        if impl == 'mmcvt-cp':
            # activation checkpointing per block (config: with_cp=True)
            for stage in model.backbone.stages:
                stage.with_cp = True
        if impl == 'mmcvt-compile':
            return torch.compile(model), model
        return model, model
    if impl in extras:
        model = call_extra(
            extras[impl],
            arch=ctx.arch,
            img_size=size,
            num_classes=NUM_CLASSES,
            hf_state_dict=ctx.hf_state_dict,
            hf_config=ctx.hf_config,
            device=device)
        if not isinstance(model, nn.Module):
            raise TypeError(f'{impl} returned {type(model).__name__}, '
                            'expected an nn.Module')
        model = model.to(device)
        return model, model
    raise ValueError(f'Unknown impl "{impl}"; use one of {BUILTIN_IMPLS} '
                     'or --impl-extra')


def first_tensor(out):
    """The logits of a model output (tensor, HF output, tuple / dict)."""
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, 'logits'):
        return out.logits
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)) and out:
        return first_tensor(out[-1])
    raise TypeError(f'Cannot find a tensor in a {type(out).__name__} output')


def loss_of(out, labels: torch.Tensor) -> torch.Tensor:
    logits = first_tensor(out)
    if logits.dim() == 2 and logits.shape == (labels.shape[0], NUM_CLASSES):
        return F.cross_entropy(logits.float(), labels)
    return logits.float().mean()


# --------------------------------------------------------------------------
# Measurement helpers
# --------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def storages_bytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors``."""
    seen, total = set(), 0
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            continue
        st = t.untyped_storage()
        key = (st.data_ptr(), st.device)
        if key in seen or st.data_ptr() == 0:
            continue
        seen.add(key)
        total += st.nbytes()
    return total


def live_state_tensors(model: nn.Module, optimizer, inputs) -> list:
    tensors = list(model.parameters()) + list(model.buffers())
    tensors += [p.grad for p in model.parameters() if p.grad is not None]
    if optimizer is not None:
        for state in optimizer.state.values():
            tensors += [v for v in state.values() if torch.is_tensor(v)]
    tensors += list(inputs)
    return tensors


def cpu_peak_delta(step: Callable[[], None]) -> int:
    """Peak increase of CPU tensor memory during ``step()`` (bytes), from
    the profiler's allocator events."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile
    cpu_types = {DeviceType.CPU, DeviceType.MKLDNN, DeviceType.IDEEP}
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as p:
        step()
    events = [
        e for e in p.profiler.kineto_results.events()
        if e.name() == '[memory]' and e.device_type() in cpu_types
    ]
    events.sort(key=lambda e: e.start_ns())
    cur = peak = 0
    for e in events:
        cur += e.nbytes()
        peak = max(peak, cur)
    return peak


def measure_peak(step: Callable[[], None], device: torch.device,
                 live: Callable[[], list],
                 prepare: Optional[Callable[[], None]] = None
                 ) -> Tuple[int, int]:
    """(peak total bytes, peak delta bytes) of one ``step()``.

    ``prepare()`` runs first, outside the measurement: the train step frees
    the previous gradients (``zero_grad(set_to_none=True)``) before
    allocating anything, so doing that up front gives the same peak, and on
    CPU it keeps the profiler from missing frees of blocks allocated before
    it started (it cannot size those).
    """
    if prepare is not None:
        prepare()
    gc.collect()
    own = storages_bytes(live())
    if device.type == 'cuda':
        sync(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step()
        sync(device)
        delta = torch.cuda.max_memory_allocated(device) - base
    else:
        delta = cpu_peak_delta(step)
    return own + delta, delta


_MAC_CACHE: Dict[tuple, Tuple[float, float]] = {}


def _sdpa_formulas() -> dict:
    """Extra / overriding ``FlopCounterMode`` formulas for fused attention.

    * ``F.scaled_dot_product_attention`` on CPU dispatches to
      ``_scaled_dot_product_flash_attention_for_cpu`` (+ ``_backward``),
      which FlopCounterMode does not count at all; count it like SDPA.
    * torch counts a fused attention backward as 5 matmuls (it includes the
      recomputation of the scores); the MACs of the *model* are 2x its
      forward (dQ, dK, dV, dP), as for an unfused implementation. Count all
      SDPA backwards that way so fused and unfused models get equal counts.
    """
    from torch.utils.flop_counter import sdpa_flop_count
    aten = torch.ops.aten

    def fwd(query, key, value, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(query, key, value)

    def bwd(grad_out, query, key, value, *args, out_shape=None, **kwargs):
        return 2 * sdpa_flop_count(query, key, value)

    mapping = {}
    for name in ('_scaled_dot_product_flash_attention_for_cpu', ):
        if hasattr(aten, name):
            mapping[getattr(aten, name)] = fwd
    for name in ('_scaled_dot_product_flash_attention_for_cpu_backward',
                 '_scaled_dot_product_flash_attention_backward',
                 '_scaled_dot_product_efficient_attention_backward',
                 '_scaled_dot_product_cudnn_attention_backward'):
        if hasattr(aten, name):
            mapping[getattr(aten, name)] = bwd
    return mapping


def count_macs(model: nn.Module, size: int, device: torch.device,
               mode: str) -> float:
    """Multiply-accumulates per image of one fp32 forward (infer) or
    forward + backward (train)."""
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.randn(1, 3, size, size, device=device)
    counter = FlopCounterMode(display=False,
                              custom_mapping=_sdpa_formulas())
    was_training = model.training
    if mode == 'infer':
        model.eval()
        with torch.no_grad(), counter:
            model(x)
    else:
        # BN in eval for the count: the conv / matmul work is the same and
        # the running statistics stay untouched
        model.eval()
        labels = torch.zeros(1, dtype=torch.long, device=device)
        with counter:
            loss_of(model(x), labels).backward()
        model.zero_grad(set_to_none=True)
    model.train(was_training)
    return counter.get_total_flops() / 2


def matmul_kernels(device: torch.device) -> List[str]:
    """The large-matmul kernels to time: ``torch.mm`` (BLAS / cuBLAS) and,
    on CPU, oneDNN's linear (which mmcvt's CPU inference uses)."""
    kernels = ['torch.mm']
    if (device.type == 'cpu' and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, '_linear_pointwise')):
        kernels.append('onednn')
    return kernels


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int = 2048,
                seconds: float = 1.0, timer: str = 'wall',
                kernel: str = 'torch.mm') -> float:
    """Best sustained rate (MAC/s) of an n x n x n matmul loop with
    ``kernel`` (see :func:`matmul_kernels`), timed with the benchmark's
    clock."""
    clock = time.process_time if timer == 'process' else time.perf_counter
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    c = torch.mm(a, b)
    if kernel == 'onednn':
        run = functools.partial(torch.ops.mkldnn._linear_pointwise, a, b,
                                None, 'none', [], '')
    else:
        run = functools.partial(torch.mm, a, b, out=c)
    sync(device)
    best = 0.
    chunks = 3
    for _ in range(chunks):
        iters, t0 = 0, clock()
        while True:
            run()
            iters += 1
            if device.type == 'cuda' and iters % 8:
                continue
            sync(device)
            elapsed = clock() - t0
            if elapsed >= seconds / chunks:
                break
        best = max(best, iters * n**3 / elapsed)
    del a, b, c
    return best


# --------------------------------------------------------------------------
# One measurement
# --------------------------------------------------------------------------


def make_step(model: nn.Module, mode: str, x: torch.Tensor,
              labels: torch.Tensor, device: torch.device, dtype: str):
    amp = dtype != 'fp32'
    autocast = dict(device_type=device.type, dtype=DTYPES[dtype],
                    enabled=amp)
    if mode == 'infer':
        model.eval()

        def step():
            with torch.inference_mode(), torch.autocast(**autocast):
                model(x)

        return step, None
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == 'fp16')

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(**autocast):
            loss = loss_of(model(x), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step, optimizer


class Runner:
    """One measurement (impl x arch x size x mode), in phases so that
    several implementations can be timed round-robin (interleaved), which
    spreads the noise of a shared machine evenly over them."""

    def __init__(self, impl: str, ctx: Context, size: int, mode: str, args,
                 device: torch.device, extras: dict):
        self.impl, self.ctx, self.size, self.mode = impl, ctx, size, mode
        self.args, self.device, self.extras = args, device, extras
        self.res = dict(impl=impl, arch=ctx.arch, size=size, mode=mode,
                        batch_size=args.batch_size, dtype=args.dtype,
                        status='ok')
        self.model = self.optimizer = self.step = None
        self.x = self.labels = None
        self.times: List[float] = []
        if mode == 'train' and impl == 'mmcvt-deploy':
            self.res.update(status='skipped',
                            note='switch_to_deploy() is inference-only')

    @property
    def active(self) -> bool:
        return self.res['status'] == 'ok'

    def _guard(self, fn: Callable[[], None]) -> None:
        if not self.active:
            return
        try:
            fn()
        except Exception as e:  # keep going with the other measurements
            self.res.update(status='error', error=f'{type(e).__name__}: {e}',
                            traceback=traceback.format_exc(limit=8))
            self.close()

    def setup(self) -> None:
        self._guard(self._setup)

    def _setup(self) -> None:
        args, device = self.args, self.device
        model, eager = build_impl(self.impl, self.ctx, self.size, device,
                                  self.extras)
        self.model = model
        # MACs (cached per impl family: mmcvt-compile == mmcvt)
        key = ('mmcvt' if self.impl == 'mmcvt-compile' else self.impl,
               self.ctx.arch, self.size, self.mode)
        if key not in _MAC_CACHE:
            fwd = count_macs(eager, self.size, device, 'infer')
            stp = fwd if self.mode == 'infer' else count_macs(
                eager, self.size, device, 'train')
            _MAC_CACHE[key] = (fwd, stp)
        self.res['macs_fwd_per_image'], self.res['macs_step_per_image'] = \
            _MAC_CACHE[key]
        gen = torch.Generator().manual_seed(args.seed + 1)
        x = torch.randn(args.batch_size, 3, self.size, self.size,
                        generator=gen)
        labels = torch.randint(0, NUM_CLASSES, (args.batch_size, ),
                               generator=gen)
        self.x, self.labels = x.to(device), labels.to(device)
        self.step, self.optimizer = make_step(model, self.mode, self.x,
                                              self.labels, device, args.dtype)

    def warmup(self) -> None:

        def run():
            t0 = time.perf_counter()
            for _ in range(self.args.warmup):
                self.step()
            sync(self.device)
            self.res['warmup_s'] = time.perf_counter() - t0

        self._guard(run)

    def time_once(self) -> None:

        clock = time.process_time if self.args.timer == 'process' \
            else time.perf_counter

        def run():
            sync(self.device)
            t0 = clock()
            self.step()
            sync(self.device)
            self.times.append(clock() - t0)

        self._guard(run)

    def memory(self) -> None:

        def run():
            optimizer = self.optimizer
            peak, delta = measure_peak(
                self.step, self.device,
                lambda: live_state_tensors(self.model, optimizer,
                                           (self.x, self.labels)),
                prepare=None if optimizer is None else
                (lambda: optimizer.zero_grad(set_to_none=True)))
            self.res.update(peak_mb=peak / 2**20, peak_delta_mb=delta / 2**20)

        if not self.args.no_memory:
            self._guard(run)

    def finish(self) -> dict:
        if self.active:
            times, b = self.times, self.args.batch_size
            med = statistics.median(times)
            self.res.update(
                times_s=times,
                time_median_s=med,
                images_per_s=dict(median=b / med, min=b / max(times),
                                  max=b / min(times)),
                achieved_macs_per_s=self.res['macs_step_per_image'] * b / med)
        self.close()
        return self.res

    def close(self) -> None:
        self.model = self.optimizer = self.step = None
        self.x = self.labels = None
        gc.collect()
        if self.device.type == 'cuda':
            torch.cuda.empty_cache()


def run_group(impls: List[str], ctx: Context, size: int, mode: str, args,
              device: torch.device, extras: dict) -> List[dict]:
    """Measure every impl for one arch x size x mode."""
    runners = [
        Runner(impl, ctx, size, mode, args, device, extras) for impl in impls
    ]
    if args.sequential:
        for r in runners:
            r.setup()
            r.warmup()
            for _ in range(args.repeats):
                r.time_once()
            r.memory()
            r.finish()
    else:
        for r in runners:
            r.setup()
        for r in runners:
            r.warmup()
        for _ in range(args.repeats):  # round-robin over the impls
            for r in runners:
                r.time_once()
        for r in runners:
            r.memory()
        for r in runners:
            r.finish()
    return [r.res for r in runners]


def check_parity(impls: List[str], ctx: Context, device: torch.device,
                 extras: dict, size: int) -> Dict[str, dict]:
    """Max |logit difference| of each impl vs the HF model with QuickGELU
    swapped in (fp32, eval, batch 2): guards that all run the same
    weights."""
    ref = swap_quick_gelu(copy.deepcopy(ctx.hf)).to(device).eval()
    gen = torch.Generator().manual_seed(1234)
    x = torch.randn(2, 3, size, size, generator=gen).to(device)
    with torch.no_grad():
        want = ref(pixel_values=x).logits.float()
    out = {}
    for impl in impls:
        if impl == 'hf':
            out[impl] = dict(note='reference (exact GELU): not compared')
            continue
        if impl == 'mmcvt-compile':
            out[impl] = dict(note='same module as mmcvt')
            continue
        try:
            _, eager = build_impl(impl, ctx, size, device, extras)
            with torch.no_grad():
                got = first_tensor(eager.eval()(x)).float()
            if got.shape != want.shape:
                out[impl] = dict(note=f'output shape {tuple(got.shape)} is '
                                 'not the logits shape: not compared')
                continue
            diff = (got - want).abs().max().item()
            scale = want.abs().max().item()
            out[impl] = dict(max_abs_diff=diff, ref_max_abs=scale,
                             match=bool(diff <= 1e-4 * max(1., scale)))
        except Exception as e:
            out[impl] = dict(error=f'{type(e).__name__}: {e}')
    return out


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def add_ratios(results: List[dict], reference: str,
               interleaved: bool = True) -> None:
    refs = {(r['arch'], r['size'], r['mode']): r
            for r in results if r['impl'] == reference and r['status'] == 'ok'}
    for r in results:
        ref = refs.get((r['arch'], r['size'], r['mode']))
        if r['status'] != 'ok' or ref is None:
            continue
        ratios = dict(reference=reference)
        ratios['throughput'] = (r['images_per_s']['median'] /
                                ref['images_per_s']['median'])
        if interleaved and len(r['times_s']) == len(ref['times_s']):
            # round-robin timing: iteration i of every impl ran back to
            # back, so per-round ratios cancel slow drifts of the machine
            ratios['throughput_paired'] = statistics.median(
                tr / ti for tr, ti in zip(ref['times_s'], r['times_s']))
        if r.get('peak_mb') and ref.get('peak_mb'):
            ratios['memory'] = r['peak_mb'] / ref['peak_mb']
            ratios['memory_delta'] = (r['peak_delta_mb'] /
                                      ref['peak_delta_mb']
                                      if ref['peak_delta_mb'] else None)
        r['vs_reference'] = ratios


def format_table(results: List[dict], peak_rate: float,
                 reference: str) -> str:
    head = ('impl', 'arch', 'size', 'mode', 'img/s med', '[min - max]',
            f'x{reference}', 'paired', 'peak MB', 'act MB',
            f'mem x{reference}',
            'GMAC/img', 'GMAC/s', '% mm-peak')
    rows = [head]
    for r in results:
        base = (r['impl'], r['arch'], str(r['size']), r['mode'])
        if r['status'] != 'ok':
            rows.append(base + (r['status'] + ': ' +
                                (r.get('note') or r.get('error', ''))[:70], ))
            continue
        ips = r['images_per_s']
        vs = r.get('vs_reference', {})
        rows.append(base + (
            f"{ips['median']:.2f}",
            f"[{ips['min']:.2f} - {ips['max']:.2f}]",
            f"{vs['throughput']:.2f}" if 'throughput' in vs else '-',
            f"{vs['throughput_paired']:.2f}"
            if 'throughput_paired' in vs else '-',
            f"{r['peak_mb']:.0f}" if 'peak_mb' in r else '-',
            f"{r['peak_delta_mb']:.0f}" if 'peak_delta_mb' in r else '-',
            f"{vs['memory']:.2f}" if vs.get('memory') else '-',
            f"{r['macs_step_per_image'] / 1e9:.2f}",
            f"{r['achieved_macs_per_s'] / 1e9:.1f}",
            f"{100 * r['achieved_macs_per_s'] / peak_rate:.1f}"
            if peak_rate else '-',
        ))
    widths = [
        max(len(row[i]) for row in rows if len(row) > i and len(row) == len(
            head)) for i in range(len(head))
    ]
    lines = []
    for k, row in enumerate(rows):
        if len(row) == len(head):
            lines.append('  '.join(
                c.ljust(w) if i < 4 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths))))
        else:
            lines.append('  '.join(
                c.ljust(w) for c, w in zip(row[:4], widths)) + '  ' + row[4])
        if k == 0:
            lines.append('-' * len(lines[0]))
    return '\n'.join(lines)


def device_name(device: torch.device) -> str:
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Throughput / peak memory / MAC rate of mmcvt CvT vs the '
        'HuggingFace transformers reference, on the same weights.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--archs', nargs='+', default=['13', '21', 'w24'],
                   choices=sorted(ARCHS))
    p.add_argument('--sizes', nargs='+', type=int, default=[224, 384])
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available()
                   else 'cpu', help='cpu | cuda | cuda:N')
    p.add_argument('--dtype', default='fp32', choices=sorted(DTYPES),
                   help='fp32, or torch.autocast with bf16 / fp16')
    p.add_argument('--modes', nargs='+', default=['infer', 'train'],
                   choices=['infer', 'train'])
    p.add_argument('--impls', nargs='+', default=['mmcvt', 'hf'],
                   help=f'any of {BUILTIN_IMPLS} and the --impl-extra names')
    p.add_argument('--impl-extra', action='append', default=[],
                   metavar='[NAME=]module:callable',
                   help='extra implementation (repeatable); benchmarked too')
    p.add_argument('--reference', default='hf',
                   help='impl the ratios are computed against')
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--timer', default='wall', choices=['wall', 'process'],
                   help='wall: time.perf_counter (images/s as seen by a '
                   'user); process: CPU time of this process, all threads '
                   '(time.process_time). With --threads 1 on a CPU shared '
                   'with other jobs, process time is far less disturbed by '
                   'them than wall time; CPU only')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=None,
                   help='torch.set_num_threads (default: torch default)')
    p.add_argument('--sequential', action='store_true',
                   help='measure one impl at a time (default: all impls of '
                   'an arch x size x mode are alive together and timed '
                   'round-robin, which is fairer on a shared machine but '
                   'holds every model in memory at once)')
    p.add_argument('--no-memory', action='store_true',
                   help='skip the peak-memory pass')
    p.add_argument('--no-check', action='store_true',
                   help='skip the output parity check vs HF (QuickGELU)')
    p.add_argument('--check-size', type=int, default=64,
                   help='input size of the parity check')
    p.add_argument('--matmul-size', type=int, default=2048)
    p.add_argument('--matmul-seconds', type=float, default=2.0)
    p.add_argument('--json', default=None, help='write results here')
    args = p.parse_args(argv)
    if args.warmup < 0 or args.repeats < 1 or args.batch_size < 1:
        p.error('need --warmup >= 0, --repeats >= 1, --batch-size >= 1')
    if args.timer == 'process' and not args.device.startswith('cpu'):
        p.error('--timer process measures CPU time: use it with --device cpu')
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    extras = dict(load_extra(s) for s in args.impl_extra)
    impls = list(dict.fromkeys(list(args.impls) + list(extras)))
    for impl in impls:
        if impl not in BUILTIN_IMPLS and impl not in extras:
            raise SystemExit(f'Unknown impl "{impl}"; use one of '
                             f'{BUILTIN_IMPLS} or --impl-extra')

    import transformers

    import mmcvt
    meta = dict(
        date=datetime.datetime.now().isoformat(timespec='seconds'),
        argv=sys.argv if argv is None else ['benchmark.py'] + list(argv),
        device=str(device),
        device_name=device_name(device),
        dtype=args.dtype,
        batch_size=args.batch_size,
        warmup=args.warmup,
        repeats=args.repeats,
        seed=args.seed,
        threads=torch.get_num_threads(),
        loadavg_start=os.getloadavg() if hasattr(os, 'getloadavg') else None,
        torch=torch.__version__,
        transformers=transformers.__version__,
        mmcvt=mmcvt.__version__,
        python=platform.python_version(),
        memory_method=MEMORY_METHOD['cuda' if device.type == 'cuda' else
                                    'cpu'],
        mac_method=MAC_METHOD,
        timer=args.timer,
        timing_method=('wall clock (time.perf_counter) per iteration, '
                       'synchronised on CUDA' if args.timer == 'wall' else
                       'CPU time of the process, all threads '
                       '(time.process_time) per iteration') +
        '; images/s = batch / time',
        reference=args.reference,
    )
    print(f'# {meta["device_name"]} ({device}), torch {torch.__version__}, '
          f'{meta["threads"]} threads, dtype {args.dtype}, batch '
          f'{args.batch_size}, warmup {args.warmup}, repeats {args.repeats}'
          f', timer {args.timer}')
    if (device.type == 'cpu' and meta['loadavg_start']
            and meta['loadavg_start'][0] > 0.5 * (os.cpu_count() or 1)):
        print(f'# WARNING: load average {meta["loadavg_start"][0]:.1f} on '
              f'{os.cpu_count()} CPUs: other work competes for the cores, '
              'CPU timings will be noisy')

    # the machine's own large-matmul rate: the best of the kernels at hand
    rates, per_kernel = {}, {}
    for name in dict.fromkeys(['fp32', args.dtype]):
        per_kernel[name] = {
            k: matmul_rate(device, DTYPES[name], args.matmul_size,
                           args.matmul_seconds, args.timer, k)
            for k in matmul_kernels(device)
        }
        rates[name] = max(per_kernel[name].values())
        print(f'# {args.matmul_size}^3 {name} matmul: '
              f'{rates[name] / 1e9:.1f} GMAC/s (' + ', '.join(
                  f'{k} {r / 1e9:.1f}' for k, r in per_kernel[name].items())
              + ')')
    meta['matmul_macs_per_s'] = rates
    meta['matmul_macs_per_s_by_kernel'] = per_kernel
    peak_rate = rates[args.dtype]

    results, parity = [], {}
    for arch in args.archs:
        ctx = Context(arch, args.seed)
        if not args.no_check:
            parity[arch] = check_parity(impls, ctx, device, extras,
                                        args.check_size)
            for impl, p in parity[arch].items():
                if 'max_abs_diff' in p:
                    print(f'# parity {impl} vs hf+QuickGELU (CvT-{arch}): '
                          f'max |diff| {p["max_abs_diff"]:.2e} '
                          f'({"ok" if p["match"] else "MISMATCH"})')
                elif 'error' in p:
                    print(f'# parity {impl} (CvT-{arch}): {p["error"]}')
        for size in args.sizes:
            for mode in args.modes:
                for r in run_group(impls, ctx, size, mode, args, device,
                                   extras):
                    results.append(r)
                    msg = r['status']
                    if r['status'] == 'ok':
                        msg = (f"{r['images_per_s']['median']:.2f} img/s, "
                               f"peak {r.get('peak_mb', float('nan')):.0f} MB")
                    elif r.get('error'):
                        msg += ': ' + r['error']
                    print(f"#   {r['impl']:<14} CvT-{arch:<4} {size:>4} "
                          f'{mode:<5} {msg}', flush=True)
        del ctx
        gc.collect()

    add_ratios(results, args.reference, not args.sequential)
    meta['loadavg_end'] = (os.getloadavg()
                           if hasattr(os, 'getloadavg') else None)
    print()
    print(format_table(results, peak_rate, args.reference))
    print(f'\nx{args.reference}: median images/s ratio; paired: median over '
          'rounds of the per-round time ratio (round-robin timing)'
          f'\nmemory: {meta["memory_method"]}\nMACs: {MAC_METHOD}\n'
          f'% mm-peak: achieved MAC rate / best {args.matmul_size}^3 '
          f'{args.dtype} matmul rate ({peak_rate / 1e9:.1f} GMAC/s)')
    report = dict(meta=meta, parity=parity, results=results)
    if args.json:
        d = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(d, exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(report, f, indent=2)
        print(f'wrote {args.json}')
    return report


if __name__ == '__main__':
    main()
