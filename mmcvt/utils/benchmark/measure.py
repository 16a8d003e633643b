# Copyright (c) mmcvt contributors. All rights reserved.
"""Measuring one implementation: time per step (inference or a training
step), peak memory, multiply-accumulates, and the machine's own large-matmul
rate; :class:`Measurement` runs them in phases so that several
implementations are timed round-robin (:func:`measure_group`)."""
import copy
import functools
import gc
import statistics
import time
import traceback
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from mmcvt.models.layers import torch_internals
from .impls import NUM_CLASSES, Weights, build_impl, hw, loss_of, split_impl

DTYPES = {
    'fp32': torch.float32,
    'bf16': torch.bfloat16,
    'fp16': torch.float16
}


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


def sdpa_formulas() -> dict:
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


def count_macs(model: nn.Module, size, device: torch.device,
               mode: str) -> float:
    """Multiply-accumulates per image of one fp32 forward (infer) or
    forward + backward (train); ``size``: S or (H, W). Counted on a copy
    on the ``meta`` device (no memory, no compute: at 800x1333 the counted
    reference attention would otherwise materialise gigabytes), or on
    ``device`` for a model whose ops have no meta kernels."""
    try:
        return _count_macs(copy.deepcopy(model).to('meta'), size,
                           torch.device('meta'), mode)
    except (NotImplementedError, RuntimeError):
        return _count_macs(model, size, device, mode)


def _count_macs(model: nn.Module, size, device: torch.device,
                mode: str) -> float:
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.randn(1, 3, *hw(size), device=device)
    counter = FlopCounterMode(display=False,
                              custom_mapping=sdpa_formulas())
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
    if device.type == 'cpu' and torch_internals.onednn_linear_usable():
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
        run = functools.partial(torch_internals.onednn_linear, a, b)
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


class Measurement:
    """One measurement (impl x arch x size x mode), in phases so that
    several implementations can be timed round-robin (interleaved), which
    spreads the noise of a shared machine evenly over them."""

    def __init__(self, impl: str, ctx: Weights, size: int, mode: str, args,
                 device: torch.device, extras: dict):
        self.impl, self.ctx, self.size, self.mode = impl, ctx, size, mode
        self.args, self.device, self.extras = args, device, extras
        # 'mmcvt@fp32': mmcvt in fp32 whatever --dtype is
        self.dtype = split_impl(impl)[1] or args.dtype
        self.res = dict(impl=impl, arch=ctx.arch, size=size, mode=mode,
                        batch_size=args.batch_size, dtype=self.dtype,
                        status='ok')
        self.model = self.optimizer = self.step = None
        self.x = self.labels = None
        self.times: List[float] = []
        if mode == 'train' and split_impl(impl)[0] == 'mmcvt-deploy':
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
                                  self.extras, getattr(args, 'task', 'cls'))
        self.model = model
        # MACs (cached per impl family: mmcvt-compile == mmcvt)
        base = split_impl(self.impl)[0]
        key = ('mmcvt' if base == 'mmcvt-compile' else base, self.ctx.arch,
               self.size, self.mode)
        if key not in _MAC_CACHE:
            fwd = count_macs(eager, self.size, device, 'infer')
            stp = fwd if self.mode == 'infer' else count_macs(
                eager, self.size, device, 'train')
            _MAC_CACHE[key] = (fwd, stp)
        self.res['macs_fwd_per_image'], self.res['macs_step_per_image'] = \
            _MAC_CACHE[key]
        gen = torch.Generator().manual_seed(args.seed + 1)
        x = torch.randn(args.batch_size, 3, *hw(self.size), generator=gen)
        labels = torch.randint(0, NUM_CLASSES, (args.batch_size, ),
                               generator=gen)
        self.x, self.labels = x.to(device), labels.to(device)
        self.step, self.optimizer = make_step(model, self.mode, self.x,
                                              self.labels, device, self.dtype)

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


def measure_group(impls: List[str], ctx: Weights, size: int, mode: str, args,
              device: torch.device, extras: dict) -> List[dict]:
    """Measure every impl for one arch x size x mode."""
    runners = [
        Measurement(impl, ctx, size, mode, args, device, extras)
        for impl in impls
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
