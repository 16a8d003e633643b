# Copyright (c) mmcvt contributors. All rights reserved.
"""The benchmark's report: ratios against the reference implementation,
the results table, and what each number means."""
import platform
import statistics
from typing import Dict, List

import torch

from .impls import hw, size_label, split_impl

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
              'image, on a meta-device copy of the model (convs, '
              'linears/matmuls, attention incl. SDPA; an '
              'attention backward counts 2x its forward, no recompute); '
              'infer: forward MACs, train: forward + backward MACs '
              '(optimizer excluded); achieved rate = MACs/image x images/s')


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
            ratios['throughput_paired'] = _paired(r['times_s'],
                                                  ref['times_s'])
        if r.get('peak_mb') and ref.get('peak_mb'):
            ratios['memory'] = r['peak_mb'] / ref['peak_mb']
            ratios['memory_delta'] = (r['peak_delta_mb'] /
                                      ref['peak_delta_mb']
                                      if ref['peak_delta_mb'] else None)
        r['vs_reference'] = ratios


def _paired(times: List[float], ref_times: List[float]) -> float:
    """How much faster ``times`` ran than ``ref_times``: the median over
    the round-robin rounds of the per-round time ratio."""
    return statistics.median(tr / t for t, tr in zip(times, ref_times))


def add_dtype_ratios(results: List[dict], dtype: str,
                     interleaved: bool = True) -> None:
    """Throughput of each impl at the run's dtype over the same impl pinned
    to another dtype (``mmcvt`` over ``mmcvt@fp32``): ``vs_dtype``."""
    ok = {(r['impl'], r['arch'], r['size'], r['mode']): r
          for r in results if r['status'] == 'ok'}
    for (impl, arch, size, mode), pinned in ok.items():
        base, pin = split_impl(impl)
        run = ok.get((base, arch, size, mode))
        if not pin or pin == dtype or run is None:
            continue
        ratio = dict(impl=base, dtype=dtype, over=impl, throughput=(
            run['images_per_s']['median'] / pinned['images_per_s']['median']))
        if interleaved and len(run['times_s']) == len(pinned['times_s']):
            ratio['throughput_paired'] = _paired(run['times_s'],
                                                 pinned['times_s'])
        run.setdefault('vs_dtype', []).append(ratio)


def format_dtype_ratios(results: List[dict]) -> str:
    """One line per :func:`add_dtype_ratios` ratio."""
    lines = []
    for r in results:
        for v in r.get('vs_dtype', []):
            paired = (f" (paired {v['throughput_paired']:.2f})"
                      if 'throughput_paired' in v else '')
            lines.append(f"{v['impl']} {r['arch']} {size_label(r['size'])} "
                         f"{r['mode']}: {v['dtype']} is "
                         f"{v['throughput']:.2f}x {v['over']}{paired}")
    return '\n'.join(lines)


def format_table(results: List[dict], rates: Dict[str, float],
                 reference: str) -> str:
    """The results table; ``rates``: the large-matmul rate per dtype
    (``% mm-peak`` of a row is against its own dtype's)."""
    head = ('impl', 'arch', 'size', 'mode', 'img/s med', '[min - max]',
            f'x{reference}', 'paired', 'peak MB', 'act MB',
            f'mem x{reference}',
            'GMAC/img', 'GMAC/s', '% mm-peak')
    rows = [head]
    for r in results:
        base = (r['impl'], r['arch'], size_label(r['size']), r['mode'])
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
            f"{100 * r['achieved_macs_per_s'] / rates[r['dtype']]:.1f}"
            if rates.get(r['dtype']) else '-',
        ))
    return _align(rows, n_left=4)


def format_growth(results: List[dict]) -> str:
    """How time, peak memory and MACs grow with the input area, per impl x
    arch x mode, relative to its smallest measured size."""
    groups = {}
    for r in results:
        if r['status'] == 'ok':
            groups.setdefault((r['impl'], r['arch'], r['mode']), []).append(r)
    rows = [('impl', 'arch', 'mode', 'size', 'area x', 'time x', 'peak x',
             'MACs x', 's/img', 'peak MB')]
    def area(r):
        h, w = hw(r['size'])
        return h * w

    def seconds(r):  # per image
        return r['time_median_s'] / r['batch_size']

    for (impl, arch, mode), rs in groups.items():
        rs = sorted(rs, key=area)
        base = rs[0]
        for r in rs:
            t = seconds(r)
            peak = r.get('peak_mb')
            rows.append((
                impl, arch, mode, size_label(r['size']),
                f'{area(r) / area(base):.1f}', f'{t / seconds(base):.1f}',
                f"{peak / base['peak_mb']:.1f}"
                if peak and base.get('peak_mb') else '-',
                '{:.1f}'.format(r['macs_step_per_image'] /
                                base['macs_step_per_image']),
                f'{t:.3f}', f'{peak:.0f}' if peak else '-'))
    return ('growth with the input area (x: relative to the smallest size '
            'of the same impl / arch / mode)\n' + _align(rows, n_left=4))


def _align(rows: List[tuple], n_left: int) -> str:
    """A text table: the first ``n_left`` columns left-aligned, the others
    right-aligned, a rule under the header. A row shorter than the header
    (a failed measurement) keeps its first ``n_left`` cells aligned and its
    last cell as it is."""
    full = [row for row in rows if len(row) == len(rows[0])]
    widths = [max(len(row[i]) for row in full) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        if len(row) == len(widths):
            lines.append('  '.join(
                c.ljust(w) if i < n_left else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths))))
        else:
            lines.append('  '.join(
                c.ljust(w) for c, w in zip(row[:n_left], widths)) + '  ' +
                         row[n_left])
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
