# Copyright (c) mmcvt contributors. All rights reserved.
"""The benchmark's command line (``tools/analysis/benchmark.py``)."""
import argparse
import datetime
import gc
import json
import os
import platform
import sys

import torch

from .impls import (
    ARCHS,
    BUILTIN_IMPLS,
    Weights,
    check_parity,
    load_extra,
    parse_size,
    size_label,
    split_impl,
)
from .measure import DTYPES, matmul_kernels, matmul_rate, measure_group
from .report import (
    MAC_METHOD,
    MEMORY_METHOD,
    add_dtype_ratios,
    add_ratios,
    device_name,
    format_dtype_ratios,
    format_growth,
    format_table,
)


def _size_arg(text: str):
    try:
        return parse_size(text)
    except ValueError as e:  # argparse shows the message of this type only
        raise argparse.ArgumentTypeError(str(e)) from e


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Throughput / peak memory / MAC rate of mmcvt CvT vs the '
        'HuggingFace transformers reference, on the same weights.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--archs', nargs='+', default=['13', '21', 'w24'],
                   choices=sorted(ARCHS))
    p.add_argument('--sizes', nargs='+', type=_size_arg,
                   default=[224, 384],
                   help='input sizes: S (square) or HxW, e.g. 224 800x1333')
    p.add_argument('--task', default='cls', choices=['cls', 'dense'],
                   help='cls: classifier (logits, cross entropy); dense: the '
                   'backbone alone, every stage\'s map out (as detection '
                   'and segmentation use it), loss = sum of their means')
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available()
                   else 'cpu', help='cpu | cuda | cuda:N')
    p.add_argument('--dtype', default='fp32', choices=sorted(DTYPES),
                   help='fp32, or torch.autocast with bf16 / fp16')
    p.add_argument('--modes', nargs='+', default=['infer', 'train'],
                   choices=['infer', 'train'])
    p.add_argument('--impls', nargs='+', default=['mmcvt', 'hf'],
                   help=f'any of {BUILTIN_IMPLS} and the --impl-extra names; '
                   'IMPL@DTYPE pins one to a dtype (e.g. mmcvt@fp32 in a '
                   '--dtype bf16 run)')
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
        base, dtype = split_impl(impl)
        if base not in BUILTIN_IMPLS and base not in extras:
            raise SystemExit(f'Unknown impl "{base}"; use one of '
                             f'{BUILTIN_IMPLS} or --impl-extra')
        if '@' in impl and dtype not in DTYPES:
            raise SystemExit(f'Unknown dtype in "{impl}": IMPL@DTYPE takes '
                             f'one of {sorted(DTYPES)}, e.g. mmcvt@fp32')

    import transformers

    import mmcvt
    meta = dict(
        date=datetime.datetime.now().isoformat(timespec='seconds'),
        argv=sys.argv if argv is None else ['benchmark.py'] + list(argv),
        device=str(device),
        device_name=device_name(device),
        dtype=args.dtype,
        task=args.task,
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
    pinned = [split_impl(i)[1] for i in impls if '@' in i]
    for name in dict.fromkeys(['fp32', args.dtype] + pinned):
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

    results, parity = [], {}
    for arch in args.archs:
        ctx = Weights(arch, args.seed)
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
                for r in measure_group(impls, ctx, size, mode, args, device,
                                   extras):
                    results.append(r)
                    msg = r['status']
                    if r['status'] == 'ok':
                        msg = (f"{r['images_per_s']['median']:.2f} img/s, "
                               f"peak {r.get('peak_mb', float('nan')):.0f} MB")
                    elif r.get('error'):
                        msg += ': ' + r['error']
                    print(f"#   {r['impl']:<14} CvT-{arch:<4} "
                          f"{size_label(size):>8} "
                          f'{mode:<5} {msg}', flush=True)
        del ctx
        gc.collect()

    add_ratios(results, args.reference, not args.sequential)
    add_dtype_ratios(results, args.dtype, not args.sequential)
    meta['loadavg_end'] = (os.getloadavg()
                           if hasattr(os, 'getloadavg') else None)
    print()
    print(format_table(results, rates, args.reference))
    dtype_lines = format_dtype_ratios(results)
    if dtype_lines:
        print()
        print(dtype_lines)
    if len(args.sizes) > 1:
        print()
        print(format_growth(results))
    print(f'\nx{args.reference}: median images/s ratio; paired: median over '
          'rounds of the per-round time ratio (round-robin timing)'
          f'\nmemory: {meta["memory_method"]}\nMACs: {MAC_METHOD}\n'
          f'% mm-peak: achieved MAC rate / best {args.matmul_size}^3 '
          'matmul rate of the row\'s dtype (' + ', '.join(
              f'{k} {v / 1e9:.1f}' for k, v in rates.items()) + ' GMAC/s)')
    report = dict(meta=meta, parity=parity, results=results)
    if args.json:
        d = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(d, exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(report, f, indent=2)
        print(f'wrote {args.json}')
    return report
