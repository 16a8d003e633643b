# Copyright (c) mmcvt contributors. All rights reserved.
"""Tests of ``tools/analysis/benchmark.py``: the tool runs end to end and
writes the expected JSON, and it benchmarks the same weights in mmcvt and in
the HuggingFace reference. No timing assertions."""
import copy
import json
import os
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
import torch

# a pinned test dependency: imported plainly, so a broken install fails
import transformers  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(ROOT, 'tools', 'analysis', 'benchmark.py')


def _load_benchmark():
    """The benchmark package behind tools/analysis/benchmark.py."""
    import mmcvt.utils.benchmark as bench
    return bench


EXTRA_IMPL = textwrap.dedent('''
    import torch.nn as nn


    def build(arch, img_size, num_classes):
        assert arch == 'tiny' and img_size == 64
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=4), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(), nn.Linear(8, num_classes))
''')


def test_benchmark_end_to_end(tmp_path):
    """Tiny arch, batch 2, 1 warm-up, 1 repeat, both modes, mmcvt / deploy /
    hf / an --impl-extra model, in a subprocess: JSON with every field."""
    (tmp_path / 'extra_impl.py').write_text(EXTRA_IMPL)
    out = tmp_path / 'bench.json'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env['PYTHONPATH'] = os.pathsep.join(
        [str(tmp_path), ROOT] +
        ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    cmd = [
        sys.executable, SCRIPT,
        '--archs', 'tiny', '--sizes', '64', '--batch-size', '2',
        '--warmup', '1', '--repeats', '1', '--threads', '1',
        '--device', 'cpu', '--dtype', 'fp32', '--modes', 'infer', 'train',
        '--impls', 'mmcvt', 'mmcvt-deploy', 'mmcvt-reference', 'mmcvt-cp',
        'hf', 'mmcvt@bf16',
        '--impl-extra', 'toy=extra_impl:build',
        '--matmul-size', '512', '--matmul-seconds', '0.1',
        '--json', str(out),
    ]  # yapf: disable
    proc = subprocess.run(
        cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the printed table
    assert 'img/s med' in proc.stdout and 'mem xhf' in proc.stdout
    assert 'parity mmcvt vs hf+QuickGELU' in proc.stdout

    report = json.loads(out.read_text())
    meta = report['meta']
    for key in ('device', 'device_name', 'dtype', 'batch_size', 'warmup',
                'repeats', 'threads', 'timer', 'torch', 'transformers',
                'memory_method', 'mac_method', 'matmul_macs_per_s',
                'reference'):
        assert key in meta, key
    assert meta['device'] == 'cpu' and meta['batch_size'] == 2
    assert meta['matmul_macs_per_s']['fp32'] > 0
    # the peak is the best kernel's rate
    by_kernel = meta['matmul_macs_per_s_by_kernel']['fp32']
    assert 'torch.mm' in by_kernel
    assert meta['matmul_macs_per_s']['fp32'] == max(by_kernel.values())
    assert 'profiler' in meta['memory_method']

    # same weights: mmcvt (and its deploy form) reproduce HF + QuickGELU
    parity = report['parity']['tiny']
    assert parity['mmcvt']['match'], parity
    assert parity['mmcvt-deploy']['match'], parity
    assert parity['mmcvt-reference']['match'], parity

    results = {(r['impl'], r['mode']): r for r in report['results']}
    expected = {(impl, mode)
                for impl in ('mmcvt', 'mmcvt-deploy', 'mmcvt-reference',
                             'mmcvt-cp', 'hf', 'mmcvt@bf16', 'toy')
                for mode in ('infer', 'train')}
    assert set(results) == expected
    assert results[('mmcvt-deploy', 'train')]['status'] == 'skipped'
    # IMPL@DTYPE: the same model in bf16 autocast, timed in the same rounds;
    # the run's dtype over it is reported per mode
    assert meta['matmul_macs_per_s']['bf16'] > 0
    assert 'fp32 is' in proc.stdout and 'x mmcvt@bf16 (paired' in proc.stdout
    for mode in ('infer', 'train'):
        (vs, ) = results[('mmcvt', mode)]['vs_dtype']
        pinned = results[('mmcvt@bf16', mode)]
        assert pinned['dtype'] == 'bf16'
        assert (vs['over'], vs['dtype']) == ('mmcvt@bf16', 'fp32')
        assert vs['throughput'] == pytest.approx(
            results[('mmcvt', mode)]['images_per_s']['median'] /
            pinned['images_per_s']['median'])
        assert pinned['macs_step_per_image'] == \
            results[('mmcvt', mode)]['macs_step_per_image']
    for key, r in results.items():
        if key == ('mmcvt-deploy', 'train'):
            continue
        assert r['status'] == 'ok', (key, r.get('error'), r.get('traceback'))
        assert (r['arch'], r['size'], r['batch_size'], r['dtype']) == \
            ('tiny', 64, 2, 'bf16' if '@' in key[0] else 'fp32')
        assert len(r['times_s']) == 1 and r['time_median_s'] > 0
        ips = r['images_per_s']
        assert 0 < ips['min'] <= ips['median'] <= ips['max']
        assert r['peak_mb'] > 0 and 0 <= r['peak_delta_mb'] <= r['peak_mb']
        assert r['macs_fwd_per_image'] > 0
        assert r['achieved_macs_per_s'] > 0
        vs = r['vs_reference']
        assert vs['reference'] == 'hf'
        assert vs['throughput'] > 0 and vs['memory'] > 0
        assert vs['throughput_paired'] > 0  # round-robin timing
        if r['mode'] == 'train':
            # forward + backward: about 3x the forward
            assert r['macs_step_per_image'] > 2 * r['macs_fwd_per_image']
            # weights + grads + AdamW state are part of the peak
            assert r['peak_mb'] > results[(key[0], 'infer')]['peak_mb']
        else:
            assert r['macs_step_per_image'] == r['macs_fwd_per_image']
    for mode in ('infer', 'train'):
        assert results[('hf', mode)]['vs_reference']['throughput'] == 1.0
        # the same model: the same MACs in both implementations
        for impl in ('mmcvt', 'mmcvt-reference'):
            assert results[(impl, mode)]['macs_step_per_image'] == \
                pytest.approx(results[('hf', mode)]['macs_step_per_image'])
    # memory is measured, not timed: deterministic. The fast paths and
    # checkpointing keep less for the backward than the reference path.
    act = {impl: results[(impl, 'train')]['peak_delta_mb']
           for impl in ('mmcvt', 'mmcvt-reference', 'mmcvt-cp')}
    assert act['mmcvt-cp'] < act['mmcvt'] < act['mmcvt-reference'], act


def test_converted_hf_weights_give_hf_outputs():
    """The benchmark's mmcvt model (HF weights -> convert_hf_to_mmcvt ->
    strict load) computes the HF model's logits once HF uses QuickGELU, so
    the benchmark compares the same weights. CvT-13 with randomised norm
    statistics / affine parameters, eval mode."""
    bench = _load_benchmark()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the 2 test cores are shared; be quick
    try:
        _check_parity(bench)
    finally:
        torch.set_num_threads(threads)


def _check_parity(bench):
    hf = bench.build_hf('13', seed=0)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in hf.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.LayerNorm)):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape,
                                                     generator=gen))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=gen))
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(
                    0.2 * torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(
                    torch.rand(m.running_var.shape, generator=gen) + 0.5)
    mm = bench.build_mmcvt('13', hf.state_dict())
    hf_exact_gelu = copy.deepcopy(hf)
    bench.swap_quick_gelu(hf)

    x = torch.randn(2, 3, 64, 64, generator=gen)
    with torch.no_grad():
        want = hf(pixel_values=x).logits
        got = mm(x)
        mm.backbone.switch_to_deploy()
        got_deploy = mm(x)
    assert got.shape == want.shape == (2, 1000)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got_deploy, want, rtol=1e-4, atol=1e-4)
    # and the swap matters: exact GELU gives different logits
    with torch.no_grad():
        exact = hf_exact_gelu(pixel_values=x).logits
    assert not torch.allclose(exact, want, rtol=1e-4, atol=1e-4)


def test_resolution_sweep_of_dense_backbones(capsys):
    """``--task dense`` over a square and a non-square size: both backbones
    return every stage's map for the same weights, every measurement runs,
    and the growth table relates time, memory and MACs to the input area."""
    from mmcvt.utils.benchmark import impls
    from mmcvt.utils.benchmark.cli import main
    ctx = impls.Weights('tiny', seed=0)
    x = torch.randn(1, 3, 40, 72)
    with torch.no_grad():
        ours = impls.build_impl('mmcvt', ctx, (40, 72), torch.device('cpu'),
                                {}, task='dense')[0](x)
        ref = impls.build_impl('hf', ctx, (40, 72), torch.device('cpu'), {},
                               task='dense')[0](x)
    assert [tuple(t.shape) for t in ours] == [tuple(t.shape) for t in ref] \
        == [(1, 16, 10, 18), (1, 32, 5, 9), (1, 64, 3, 5)]
    # the same weights: only the MLP activation differs (QuickGELU vs GELU)
    for a, b in zip(ours, ref):
        assert (a - b).abs().max() < 0.05 * b.abs().max()

    report = main([
        '--archs', 'tiny', '--sizes', '48', '64x96', '--task', 'dense',
        '--batch-size', '1', '--warmup', '0', '--repeats', '1',
        '--threads', '1', '--modes', 'infer', 'train',
        '--matmul-size', '128', '--matmul-seconds', '0.05', '--no-check'
    ])  # yapf: disable
    assert report['meta']['task'] == 'dense'
    res = report['results']
    assert [(r['impl'], r['size'], r['mode'], r['status']) for r in res] == [
        (impl, size, mode, 'ok') for size in (48, (64, 96))
        for mode in ('infer', 'train') for impl in ('mmcvt', 'hf')
    ]
    macs = {(r['impl'], r['size'], r['mode']): r['macs_step_per_image']
            for r in res}
    for impl in ('mmcvt', 'hf'):
        for mode in ('infer', 'train'):
            # 2.67x the area: more than 2.67x the MACs (attention is
            # quadratic in the token count)
            growth = macs[impl, (64, 96), mode] / macs[impl, 48, mode]
            assert 64 * 96 / 48**2 < growth < (64 * 96 / 48**2)**2
    out = capsys.readouterr().out
    assert 'growth with the input area' in out and '64x96' in out
    with pytest.raises(SystemExit):
        main(['--sizes', '800x'])
    assert "S or HxW, e.g. 224 or 800x1333; got '800x'" in \
        capsys.readouterr().err


@pytest.mark.parametrize('impl,message', [
    ('mmcvt@fp8', 'Unknown dtype in "mmcvt@fp8": IMPL@DTYPE takes one of'),
    ('mine@bf16', 'Unknown impl "mine"; use one of')])
def test_bad_impl_names_say_what_is_accepted(impl, message):
    main = _load_benchmark().main
    with pytest.raises(SystemExit, match=message):
        main(['--archs', 'tiny', '--impls', 'mmcvt', impl])


@pytest.mark.parametrize('task', ['cls', 'dense'])
def test_macs_counted_on_meta_equal_the_cpu_count(task):
    """The MAC count runs on a meta-device copy (no memory at dense sizes);
    it gives the count of the model run on the CPU, and leaves the model's
    mode and gradients as they were."""
    from mmcvt.utils.benchmark import impls, measure
    ctx = impls.Weights('tiny', seed=0)
    cpu = torch.device('cpu')
    for impl in ('mmcvt', 'hf'):
        model = impls.build_impl(impl, ctx, (40, 72), cpu, {}, task)[1]
        model.train()
        for mode in ('infer', 'train'):
            assert measure.count_macs(model, (40, 72), cpu, mode) == \
                measure._count_macs(model, (40, 72), cpu, mode)
        assert model.training
        assert all(p.grad is None for p in model.parameters())
        assert all(p.device == cpu for p in model.parameters())


def test_another_revision_is_timed_against_the_working_tree(monkeypatch,
                                                            capsys):
    """``--impl-extra before=mmcvt.utils.benchmark.revision:classifier``
    builds the CvT of ``MMCVT_BENCH_REV`` (here HEAD) from git, with the
    same wrappers and weights: the same outputs, and a run with both."""
    from mmcvt.utils.benchmark import impls, revision
    from mmcvt.utils.benchmark.cli import main
    monkeypatch.setenv('MMCVT_BENCH_REV', 'HEAD')
    ctx = impls.Weights('tiny', seed=0)
    ours = impls.build_mmcvt('tiny', ctx.hf_state_dict)
    theirs = revision.classifier('tiny', ctx.hf_state_dict)
    assert type(theirs.backbone).__module__ == \
        'mmcvt_rev.models.backbones.cvt'
    x = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), ours(x))
        dense = revision.backbone('tiny', ctx.hf_state_dict)(x)
        want = impls.build_mmcvt_backbone('tiny', ctx.hf_state_dict)(x)
    for a, b in zip(dense, want):
        torch.testing.assert_close(a, b)
    report = main([
        '--archs', 'tiny', '--sizes', '48', '--batch-size', '1',
        '--warmup', '0', '--repeats', '1', '--threads', '1',
        '--modes', 'infer', '--impls', 'mmcvt', 'before',
        '--reference', 'before', '--impl-extra',
        'before=mmcvt.utils.benchmark.revision:classifier',
        '--matmul-size', '128', '--matmul-seconds', '0.05', '--no-memory'
    ])  # yapf: disable
    assert [(r['impl'], r['status']) for r in report['results']] == [
        ('mmcvt', 'ok'), ('before', 'ok')]
    monkeypatch.setenv('MMCVT_BENCH_REV', 'no-such-revision')
    with pytest.raises(ValueError, match='MMCVT_BENCH_REV=no-such-revision'):
        revision.classifier('tiny', ctx.hf_state_dict)
