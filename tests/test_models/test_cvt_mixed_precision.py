"""Mixed precision and SyncBN on the fast paths.

* ``attention_chunked`` (bf16 CPU attention, explicit and chunked) computes
  the reference attention, forward and backward, whatever the chunking;
* bf16 CPU inference takes the oneDNN path with the chunked attention, and
  its outputs match the official formulation under the same autocast;
* the official ``LayerNorm`` behaviour: fp32 statistics, the input's dtype
  out (a bf16 residual stream under autocast);
* the recomputing depth-wise conv + BatchNorm kernel computes, under
  autocast, exactly what ``bn(conv(x))`` computes there; a SyncBatchNorm that
  does not synchronise takes the fast paths, one that does runs as it is.
"""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcvt.models.backbones.cvt import DWConvBN
from mmcvt.models.layers import Path, decide_plan, kernels
from mmcvt.models.layers import fast_paths as fp
from mmcvt.models.layers import torch_internals as ti
from mmcvt.models.layers.basic import LayerNorm

pytestmark = pytest.mark.usefixtures('one_torch_thread')


def _reference_attention(q, k, v, scale):
    attn = (q @ k.transpose(-2, -1)) * scale
    return attn.softmax(dim=-1) @ v


@pytest.mark.parametrize(
    'chunk,shape', [(1 << 22, (2, 3, 20, 7)), (40, (2, 3, 20, 7)),
                    (300, (2, 3, 20, 7)), (40, (1, 1, 9, 50))],
    ids=['whole', 'rows', 'groups', 'row-per-chunk'])
def test_attention_chunked_is_the_reference_attention(monkeypatch, chunk,
                                                      shape):
    """fp32: outputs and q/k/v gradients equal the explicit formulation for
    any chunking (whole, row chunks, groups of heads, one row per chunk),
    with and without autograd."""
    monkeypatch.setattr(kernels, 'ATTN_CHUNK_ELEMENTS', chunk)
    B, nh, Tq, Tkv = shape
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(B, nh, Tq, 8, generator=gen, requires_grad=True)
    k = torch.randn(B, nh, Tkv, 8, generator=gen, requires_grad=True)
    v = torch.randn(B, nh, Tkv, 8, generator=gen, requires_grad=True)
    scale = 24**-0.5
    want = _reference_attention(q, k, v, scale)
    with torch.no_grad():
        torch.testing.assert_close(kernels.attention_chunked(q, k, v, scale),
                                   want, rtol=1e-5, atol=1e-6)
    got = kernels.attention_chunked(q, k, v, scale)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    g = torch.randn(want.shape, generator=gen)
    grads = torch.autograd.grad((got * g).sum(), (q, k, v))
    wants = torch.autograd.grad((want * g).sum(), (q, k, v))
    for a, b in zip(grads, wants):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_attention_chunked_in_bf16_is_the_official_rounding():
    """bf16: the official formulation under autocast rounds the scores and
    the probabilities to bf16; the chunked attention stays within that
    rounding of it, and of fp32 attention."""
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 64, 16, generator=gen) for _ in range(3))
    scale = 32**-0.5
    exact = _reference_attention(q, k, v, scale)
    qb, kb, vb = (t.bfloat16() for t in (q, k, v))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        official = _reference_attention(qb, kb, vb, scale)
        got = kernels.attention_chunked(qb, kb, vb, scale)
    assert got.dtype == torch.bfloat16
    scale_out = exact.abs().max()
    assert (got.float() - official.float()).abs().max() < 0.02 * scale_out
    assert (got.float() - exact).abs().max() < 0.02 * scale_out


def test_bf16_cpu_inference_path(cvt_pair, img, monkeypatch):
    """Under CPU bf16 autocast, inference takes the oneDNN path where the
    CPU has native bf16 (fused linears in bf16, chunked explicit attention),
    and the outputs match the official formulation under the same
    autocast to bf16 precision."""
    calls = []
    chunked = kernels.attention_chunked

    def spy(q, *args, **kwargs):
        calls.append(q.dtype)
        return chunked(q, *args, **kwargs)

    monkeypatch.setattr(kernels, 'attention_chunked', spy)
    fast, ref = cvt_pair(out_indices=(0, 1, 2), out_type='featmap')
    fast.eval(), ref.eval()
    x = img(2, 3, 64, 48)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        onednn = decide_plan(x, True, []).path is Path.ONEDNN_INFER
        outs_f, outs_r = fast(x), ref(x)
    native_bf16 = ti.native_bf16_matmul()
    assert onednn == (ti.onednn_linear_usable() and native_bf16)
    # one attention per block, in bf16 (where bf16 matmuls are native)
    assert calls == [torch.bfloat16] * sum(fast.depths) * native_bf16
    for a, b in zip(outs_f, outs_r):
        assert a.dtype == b.dtype
        err = (a.float() - b.float()).abs()
        assert err.max() < 0.03 * b.float().abs().max(), err.max()


def test_layer_norm_returns_the_input_dtype_as_the_official_one():
    """fp32: nn.LayerNorm exactly. Under autocast: bf16 in, bf16 out (CUDA
    autocast's nn.LayerNorm gives fp32), equal to the official
    ``LayerNorm.forward`` (fp32 then ``ret.type(orig_type)``) within one
    bf16 rounding; gradients reach the input and fp32 parameters."""
    torch.manual_seed(0)
    ln = LayerNorm(32)
    nn.init.normal_(ln.weight), nn.init.normal_(ln.bias)
    x = torch.randn(2, 10, 32) * 3 + 1
    torch.testing.assert_close(
        ln(x), F.layer_norm(x, (32, ), ln.weight, ln.bias, 1e-5),
        rtol=0, atol=0)
    xb = x.bfloat16().requires_grad_()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        got = ln(xb)
        assert ln(x).dtype == torch.float32  # fp32 in (class token stage)
    official = F.layer_norm(xb.float(), (32, ), ln.weight, ln.bias,
                            1e-5).bfloat16()
    assert got.dtype == torch.bfloat16
    # one bf16 step of the largest output
    step = official.float().abs().max() * 2**-8
    assert (got.float() - official.float()).abs().max() <= step
    got.float().sum().backward()
    assert xb.grad.dtype == torch.bfloat16 and torch.isfinite(xb.grad).all()
    assert ln.weight.grad.dtype == torch.float32


def _proj():
    torch.manual_seed(0)
    proj = DWConvBN(8, 3, 2, 1).train()
    nn.init.normal_(proj.bn.weight), nn.init.normal_(proj.bn.bias)
    return proj, copy.deepcopy(proj)


def test_recomputing_projection_kernel_under_autocast_is_bn_conv():
    """The kernel CUDA mixed-precision training uses (checked here under CPU
    autocast, whose DWConvBN prefers fp32): conv in bf16, BatchNorm with
    fp32 statistics, the same output, gradients (in the inputs' dtypes) and
    running statistics as ``bn(conv(x))`` under the same autocast."""
    proj, ref = _proj()
    x = torch.randn(2, 8, 12, 12).bfloat16().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = kernels.dw_conv_bn_train(x, proj.conv, proj.bn)
        want = ref.bn(ref.conv(x_ref))
    assert out.dtype == want.dtype == torch.bfloat16
    torch.testing.assert_close(out, want, rtol=0, atol=0)
    g = torch.randn(out.shape)
    (out.float() * g).sum().backward()
    (want.float() * g).sum().backward()
    assert x.grad.dtype == torch.bfloat16
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=0, atol=0)
    for a, b in ((proj.conv.weight, ref.conv.weight),
                 (proj.bn.weight, ref.bn.weight), (proj.bn.bias,
                                                   ref.bn.bias)):
        assert a.grad.dtype == torch.float32
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-6)
    for name in ('running_mean', 'running_var', 'num_batches_tracked'):
        torch.testing.assert_close(
            getattr(proj.bn, name), getattr(ref.bn, name), rtol=0, atol=0)


def test_syncbn_without_synchronisation_takes_the_fast_paths(monkeypatch):
    """A SyncBatchNorm outside a multi-process group (single-GPU runs of the
    seg configs, ``sync_bn='torch'``) computes plain BatchNorm: training
    recomputes it, eval folds it, with the reference path's results."""
    recomputed, folded = [], []
    kernel, fold = kernels.dw_conv_bn_train, kernels.fold_bn
    monkeypatch.setattr(kernels, 'dw_conv_bn_train',
                        lambda *a: recomputed.append(1) or kernel(*a))
    monkeypatch.setattr(kernels, 'fold_bn',
                        lambda *a: folded.append(1) or fold(*a))
    proj, ref = _proj()
    proj = nn.SyncBatchNorm.convert_sync_batchnorm(proj)
    ref = nn.SyncBatchNorm.convert_sync_batchnorm(ref)
    assert type(proj.bn) is nn.SyncBatchNorm
    x = torch.randn(2, 8, 12, 12, requires_grad=True)
    torch.testing.assert_close(
        proj(x, decide_plan(x, True, [])), ref(x), rtol=1e-5, atol=1e-5)
    assert recomputed == [1]
    torch.testing.assert_close(proj.bn.running_var, ref.bn.running_var)
    proj.eval(), ref.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            proj(x, decide_plan(x, True, [])), ref(x), rtol=1e-5, atol=1e-5)
    assert folded == [1] and recomputed == [1]


def test_synchronising_syncbn_runs_as_it_is(monkeypatch):
    """In a multi-process group a training SyncBatchNorm reduces its
    statistics over the processes: the recomputing kernel (local
    statistics) must not replace it."""
    proj, _ = _proj()
    proj = nn.SyncBatchNorm.convert_sync_batchnorm(proj)
    dist = torch.distributed
    monkeypatch.setattr(dist, 'is_initialized', lambda: True)
    monkeypatch.setattr(dist, 'get_world_size', lambda group=None: 2)
    assert fp.syncs_statistics(proj.bn)
    assert not fp.can_recompute_bn(proj.conv, proj.bn)
    proj.bn.eval()  # eval statistics are not reduced: fold as usual
    assert not fp.syncs_statistics(proj.bn)
    monkeypatch.setattr(dist, 'get_world_size', lambda group=None: 1)
    proj.bn.train()
    assert not fp.syncs_statistics(proj.bn)
    assert fp.can_recompute_bn(proj.conv, proj.bn)


def test_explicit_attention_is_chosen_where_it_wins(monkeypatch):
    """bf16 on a CPU with native bf16 only; under autograd only up to
    EXPLICIT_TRAIN_MAX_KEYS keys (it keeps the probabilities for the
    backward, the flash kernel none: at 800x1333 that would be
    gigabytes)."""
    monkeypatch.setattr(ti, 'native_bf16_matmul', lambda: True)
    limit = fp.EXPLICIT_TRAIN_MAX_KEYS
    q = torch.zeros(1, 1, 4, 8, dtype=torch.bfloat16, requires_grad=True)
    small, large = (torch.zeros(1, 1, n, 8, dtype=torch.bfloat16)
                    for n in (limit, limit + 1))
    assert fp.explicit_attention_wins(q, small)
    assert not fp.explicit_attention_wins(q, large)
    with torch.no_grad():
        assert fp.explicit_attention_wins(q, large)
    assert not fp.explicit_attention_wins(q.detach().float(), small.float())
    monkeypatch.setattr(ti, 'native_bf16_matmul', lambda: False)
    with torch.no_grad():
        assert not fp.explicit_attention_wins(q, small)


# --- QuickGELU in fp16 -------------------------------------------------------


def _mlp_with_large_activations():
    """An MLP whose fc1 outputs reach +-45,000 (and small values too): past
    65504 / 1.702, where QuickGELU's 1.702 y overflows fp16 but QuickGELU
    of y itself is finite."""
    from mmcvt.models.backbones.cvt import Mlp
    torch.manual_seed(0)
    mlp = Mlp(8, 32, dict(type='QuickGELU'))
    with torch.no_grad():
        mlp.fc1.weight.normal_(0, 0.5)
        mlp.fc1.weight[:4, 0] = torch.tensor([9000., -9000., 4000., -7000.])
        mlp.fc2.weight.normal_(0, 1e-3)
    x = torch.randn(2, 5, 8)
    x[..., 0] = 5.  # fc1 rows 0-3: 45,000, -45,000, 20,000, -35,000
    return mlp, x


@pytest.mark.parametrize('mode', ['fp16 weights', 'fp16 autocast'])
@pytest.mark.parametrize('grad', [False, True], ids=['infer', 'train'])
def test_fp16_mlp_is_quick_gelu_where_quick_gelu_is_finite(mode, grad):
    """The fast paths do not fold 1.702 into fc1 in fp16 (it would overflow
    to inf, then NaN): outputs equal the official QuickGELU's exactly,
    gradients to fp16 precision, all finite."""
    mlp, x = _mlp_with_large_activations()
    if mode == 'fp16 weights':
        mlp, x = mlp.half(), x.half()
        ctx = torch.autocast('cpu', enabled=False)
    else:
        ctx = torch.autocast('cpu', dtype=torch.float16)
    ref = copy.deepcopy(mlp)
    x = x.requires_grad_(grad)
    xr = x.detach().clone().requires_grad_(grad)
    with ctx, torch.set_grad_enabled(grad):
        fc1 = ref.fc1(xr)
        assert fc1.dtype == torch.float16
        assert fc1.abs().max() > 65504 / 1.702  # 1.702 y overflows here
        plan = decide_plan(x, True, [])
        want, got = ref(xr), mlp(x, plan)
    assert plan.fast and plan.dtype == torch.float16
    assert torch.isfinite(want).all()
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    if grad:
        # small enough that fc2's gradient (~ 45,000 x g summed over 10
        # tokens) stays inside fp16 in the reference too
        g = torch.randn_like(want) * 1e-2
        (want * g).sum().backward()
        (got * g).sum().backward()
        for (name, p), q in zip(mlp.named_parameters(), ref.parameters()):
            assert torch.isfinite(q.grad).all(), name
            assert torch.isfinite(p.grad).all(), name
            torch.testing.assert_close(p.grad.float(), q.grad.float(),
                                       rtol=2e-3, atol=1e-3, msg=name)
        assert torch.isfinite(x.grad).all()
        torch.testing.assert_close(x.grad.float(), xr.grad.float(),
                                   rtol=2e-3, atol=1e-3)


def test_bf16_keeps_the_folded_mlp_and_its_range():
    """bf16 reaches 3.4e38, so 1.702 stays folded into the linears there;
    at the same activations the output matches QuickGELU to bf16
    precision."""
    assert fp.folds_quick_gelu_alpha(torch.bfloat16)
    assert fp.folds_quick_gelu_alpha(torch.float32)
    assert not fp.folds_quick_gelu_alpha(torch.float16)
    mlp, x = _mlp_with_large_activations()
    ref = copy.deepcopy(mlp)
    with torch.autocast('cpu', dtype=torch.bfloat16), torch.no_grad():
        want, got = ref(x), mlp(x, decide_plan(x, True, []))
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.float(), want.float(), rtol=2e-2,
                               atol=2e-2 * want.abs().max().item())


def test_quick_gelu_backward_is_autograds():
    """The hand-written gradient of the fp16 path: autograd's on QuickGELU
    (in fp64), and finite where 1.702 y overflows fp16."""
    y = torch.randn(1000, dtype=torch.float64) * 4
    y.requires_grad_(True)
    g = torch.randn_like(y)
    (kernels.quick_gelu(y) * g).sum().backward()
    torch.testing.assert_close(kernels.quick_gelu_backward(g, y.detach()),
                               y.grad)
    big = torch.tensor([45000., -45000., 30000.], dtype=torch.float16)
    grad = kernels.quick_gelu_backward(torch.ones_like(big), big)
    assert torch.isfinite(grad).all()
    assert grad.tolist() == [1., 0., 1.]
