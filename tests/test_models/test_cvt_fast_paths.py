"""The fast paths of the CvT backbone compute what the reference
formulation computes.

``CvT.set_fused(False)`` runs the official formulation step by step (explicit
softmax attention, ``fc2(QuickGELU(fc1(x)))``, ``bn(conv(x))``); the default
fast paths (SDPA, QuickGELU folded into one ``silu`` with recomputation in the
backward, BatchNorm folded on the fly in eval mode and recomputed in training,
chunked CPU-inference MLP) must give the same outputs, gradients and
BatchNorm statistics, and the training paths must store less for the
backward. The plan that picks them is decided once per forward.
"""
import copy

import pytest
import torch
import torch.nn as nn

from mmcvt.models import CvT
from mmcvt.models.backbones.cvt import DWConvBN, Mlp
from mmcvt.models.layers import (
    REFERENCE_PLAN,
    Path,
    Plan,
    decide_plan,
    kernels,
)
from mmcvt.models.layers import fast_paths as fp
from mmcvt.models.layers import torch_internals as ti
from mmcvt.utils.benchmark.measure import sdpa_formulas

pytestmark = pytest.mark.usefixtures('one_torch_thread')

ENTRY_POINTS = ('dw_conv_bn', 'attention', 'mlp', 'mlp_residual')


@pytest.mark.parametrize('grad', [False, True], ids=['infer', 'train'])
def test_set_fused_switches_every_fast_path(cvt_pair, img, grad,
                                            monkeypatch):
    """The fast model reaches every layer's fast entry point; with
    ``set_fused(False)`` none, and the same parameters and state dict."""
    fast, ref = cvt_pair()
    calls = []
    for name in ENTRY_POINTS:
        entry = getattr(fp, name)
        monkeypatch.setattr(
            fp, name,
            lambda *a, _e=entry, _n=name, **k: calls.append(_n) or _e(*a, **k))
    with torch.set_grad_enabled(grad):
        fast(img(1, 3, 64, 64))
        assert set(calls) == set(ENTRY_POINTS)
        calls.clear()
        ref(img(1, 3, 64, 64))
        assert calls == []
    assert fast.fused and not ref.fused
    assert fast.state_dict().keys() == ref.state_dict().keys()


def test_the_plan_is_decided_once_per_forward(cvt_pair, img, monkeypatch):
    """One decision per forward (not per layer), handed to every stage and
    block; the plan is frozen."""
    fast, _ = cvt_pair()
    fast.eval()
    plans, watched, blocks = [], [], []
    decide = fp.decide_plan
    monkeypatch.setattr(
        fp, 'decide_plan',
        lambda *a: plans.append(decide(*a)) or plans[-1])
    tools = fp.tools_watching_ops
    monkeypatch.setattr(fp, 'tools_watching_ops',
                        lambda: watched.append(1) or tools())
    for stage in fast.stages:
        for block in stage.blocks:
            block.register_forward_pre_hook(
                lambda m, args: blocks.append(args[2]))
    with torch.no_grad():
        fast(img(2, 3, 64, 64))
    assert len(plans) == 1 and len(watched) == 1
    assert plans[0].fast and plans[0].inference
    assert len(blocks) == 4 and all(p is plans[0] for p in blocks)
    with pytest.raises(AttributeError):
        plans[0].path = Path.REFERENCE


def test_decide_plan():
    x = torch.zeros(1, 3, 8, 8)
    assert decide_plan(x, False, []) == REFERENCE_PLAN
    assert decide_plan(x, True, []).path is Path.FUSED_TRAIN
    with torch.no_grad():
        want = (Path.ONEDNN_INFER
                if ti.onednn_linear_usable() else Path.FUSED_INFER)
        assert decide_plan(x, True, []).path is want
        assert decide_plan(x.double(), True, []).path is Path.FUSED_INFER
        with torch.backends.mkldnn.flags(enabled=False, allow_tf32=None):
            assert decide_plan(x, True, []).path is Path.FUSED_INFER
    with torch.autocast('cpu', dtype=torch.bfloat16):
        plan = decide_plan(x, True, [])
    assert (plan.dtype, plan.autocast, plan.cpu) == (torch.bfloat16, True,
                                                     True)
    hooked = nn.Linear(2, 2)
    handle = hooked.register_forward_pre_hook(lambda m, a: None)
    assert decide_plan(x, True, [nn.Linear(2, 2), hooked]) == REFERENCE_PLAN
    handle.remove()
    assert decide_plan(x, True, [hooked]).fast


def test_a_hook_added_between_two_forwards_is_seen(cvt_pair, img,
                                                   monkeypatch):
    """Hooks are read at every forward: one registered after a fast forward
    sees the next forward's whole tensors, computed as before."""
    monkeypatch.setattr(kernels, 'MLP_CHUNK_ELEMENTS', 256)  # many chunks
    fast, _ = cvt_pair()
    fast.eval()
    x = img(2, 3, 64, 64)
    with torch.no_grad():
        before = fast(x)[0]
        seen = []
        fast.stages[0].blocks[0].mlp.fc1.register_forward_hook(
            lambda m, args, out: seen.append(out.shape))
        after = fast(x)[0]
    assert seen == [(2, 16 * 16, 64)]
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


def test_bypassed_modules_are_the_ones_fast_paths_skip(cvt_pair):
    """Blocks, attentions and projections are called as usual (hooks on
    them see their calls); every other module inside a block is not."""
    fast, _ = cvt_pair()
    bypassed = {id(m) for m in fast._bypassed_modules()}
    block = fast.stages[2].blocks[1]
    for name in ('', 'attn', 'attn.conv_proj_q'):
        assert id(block.get_submodule(name)) not in bypassed, name
    for name in ('norm1', 'norm2', 'mlp', 'mlp.fc1', 'mlp.act',
                 'attn.proj_q', 'attn.proj', 'attn.conv_proj_k.bn'):
        assert id(block.get_submodule(name)) in bypassed, name
    # outside the blocks every module is called as usual
    assert id(fast.stages[0].patch_embed.proj) not in bypassed


@pytest.mark.parametrize('grad', [False, True], ids=['infer', 'train'])
def test_each_layer_fast_form_equals_its_math(grad, img, randomise_bn):
    """Layer by layer, called with a fast plan and with none (the reference
    plan): the same outputs, and the same gradients."""
    from mmcvt.models.backbones.cvt import ConvAttention, CvTBlock
    torch.manual_seed(0)
    proj = DWConvBN(8, 3, 2, 1)
    randomise_bn(proj)
    attn = ConvAttention(8, 2, with_cls_token=True)
    randomise_bn(attn)
    block = CvTBlock(8, 2)
    randomise_bn(block)
    mlp = Mlp(8, 32, dict(type='QuickGELU'))
    grid = img(2, 8, 6, 6)
    tokens = img(2, 1 + 36, 8)
    cases = [(proj, (grid, )), (attn, (tokens, (6, 6))),
             (block, (tokens[:, 1:], (6, 6))), (mlp, (tokens, ))]
    for layer, args in cases:
        # eval-mode BatchNorm while training: gradients, frozen statistics
        layer.train(grad).apply(
            lambda m: m.eval() if isinstance(m, nn.BatchNorm2d) else None)
        outs, grads = [], []
        for fused in (False, True):
            x = args[0].clone().requires_grad_(grad)
            with torch.set_grad_enabled(grad):
                plan = decide_plan(x, fused, [])
                assert plan.fast == fused
                out = layer(x, *args[1:], plan=plan)
            outs.append(out)
            if grad:
                out.pow(2).sum().backward()
                grads.append(x.grad)
        name = type(layer).__name__
        torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5,
                                   msg=name)
        if grad:
            torch.testing.assert_close(grads[1], grads[0], rtol=1e-4,
                                       atol=1e-5, msg=name)


def test_layer_forwards_check_at_most_two_conditions():
    """A layer's forward is the paper's math plus one branch to its fast
    form: every path condition lives in fast_paths."""
    import ast
    import inspect

    from mmcvt.models.backbones import cvt
    tree = ast.parse(inspect.getsource(cvt))
    layers = {'DWConvBN', 'ConvAttention', 'Mlp', 'CvTBlock'}
    counted = {}
    for cls in ast.walk(tree):
        if isinstance(cls, ast.ClassDef) and cls.name in layers:
            forward = next(f for f in cls.body
                           if isinstance(f, ast.FunctionDef)
                           and f.name == 'forward')
            counted[cls.name] = sum(
                isinstance(n, (ast.If, ast.IfExp)) + (
                    len(n.values) - 1 if isinstance(n, ast.BoolOp) else 0)
                for n in ast.walk(forward))
    assert counted.keys() == layers
    assert all(n <= 2 for n in counted.values()), counted


def test_private_torch_apis_only_in_torch_internals():
    """Private torch APIs sit behind one function each in
    torch_internals.py, nowhere else in the package."""
    import pathlib

    import mmcvt
    private = ('_global_forward_hooks', '_python_dispatch',
               '_linear_pointwise', '_is_mkldnn_bf16_supported')
    root = pathlib.Path(mmcvt.__file__).parent
    users = {
        str(p.relative_to(root))
        for p in root.rglob('*.py')
        if any(name in p.read_text() for name in private)
    }
    assert users == {'models/layers/torch_internals.py'}, users


@pytest.mark.parametrize('out_type', ['raw', 'featmap', 'cls_token'])
@pytest.mark.parametrize('qkv_proj', ['dw_bn', 'avg', 'linear'])
def test_eval_fast_equals_reference(cvt_pair, img, out_type, qkv_proj):
    fast, ref = cvt_pair(
        out_indices=(0, 1, 2), out_type=out_type, qkv_proj=qkv_proj)
    fast.eval(), ref.eval()
    x = img(2, 3, 72, 56)  # non-square, not a multiple of 32
    with torch.no_grad():
        outs_f, outs_r = fast(x), ref(x)
    for a, b in zip(outs_f, outs_r):
        assert a.shape == b.shape
        assert (a - b).abs().max() < 1e-5


def test_eval_chunked_mlp_equals_reference(cvt_pair, img, monkeypatch):
    """Several chunks per stage, the last one ragged."""
    # 100 rows per chunk in stage 0 (hidden width 64)
    monkeypatch.setattr(kernels, 'MLP_CHUNK_ELEMENTS', 6400)
    fast, ref = cvt_pair(out_indices=(0, 1, 2), out_type='raw')
    fast.eval(), ref.eval()
    chunks = []
    monkeypatch.setattr(
        torch.Tensor, 'split',
        lambda t, *a, f=torch.Tensor.split, **k: chunks.append(
            len(f(t, *a, **k))) or f(t, *a, **k))
    x = img(2, 3, 64, 80)  # stage 0: 2 x 16 x 20 = 640 tokens
    with torch.no_grad():
        outs_f, outs_r = fast(x), ref(x)
    monkeypatch.undo()
    assert chunks[0] == 7, chunks
    for a, b in zip(outs_f, outs_r):
        assert (a - b).abs().max() < 1e-5


def test_deploy_equals_reference(cvt_pair, img):
    fast, ref = cvt_pair(out_indices=(0, 1, 2), out_type='raw')
    fast.eval(), ref.eval()
    fast.switch_to_deploy()
    x = img(2, 3, 64, 80)
    with torch.no_grad():
        for a, b in zip(fast(x), ref(x)):
            assert (a - b).abs().max() < 1e-5


@pytest.mark.parametrize('momentum,chunk', [(0.1, None), (None, None),
                                            (0.1, 6400)])
def test_train_fast_equals_reference(assert_grads_close, cvt_pair, img,
                                     momentum, chunk, monkeypatch):
    if chunk:  # several (ragged) row chunks in the MLP of every stage
        monkeypatch.setattr(kernels, 'MLP_CHUNK_ELEMENTS', chunk)
    fast, ref = cvt_pair(out_indices=(0, 1, 2), out_type='cls_token')
    for model in (fast, ref):
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = momentum
        model.train()
    x = img(2, 3, 64, 80)
    for step in range(2):  # the running statistics accumulate
        xf, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
        outs_f, outs_r = fast(xf), ref(xr)
        for a, b in zip(outs_f, outs_r):
            assert (a - b).abs().max() < 1e-5
        weights = [img(*o.shape, seed=3 + i) for i, o in enumerate(outs_f)]
        sum((o * w).sum() for o, w in zip(outs_f, weights)).backward()
        sum((o * w).sum() for o, w in zip(outs_r, weights)).backward()
        assert (xf.grad - xr.grad).abs().max() < 1e-5 * xr.grad.abs().max()
        assert_grads_close(fast, ref)
        for (name, b1), b2 in zip(fast.named_buffers(), ref.buffers()):
            torch.testing.assert_close(b1, b2, msg=name)
        fast.zero_grad(), ref.zero_grad()
    assert fast.stages[0].blocks[0].attn.conv_proj_q.bn.num_batches_tracked \
        == 2


def test_train_norm_eval_fast_equals_reference(assert_grads_close,
                                               cvt_pair, img):
    """BatchNorm in eval mode during training (detection): folded on the
    fly, gradients still reach its weight and bias, statistics frozen."""
    fast, ref = cvt_pair(out_indices=(0, 1, 2), out_type='featmap',
                      norm_eval=True)
    fast.train(), ref.train()
    stats = copy.deepcopy(
        {k: v for k, v in fast.state_dict().items() if 'running' in k})
    x = img(2, 3, 64, 64)
    sum(o.sum() for o in fast(x)).backward()
    sum(o.sum() for o in ref(x)).backward()
    assert_grads_close(fast, ref)
    assert fast.stages[0].blocks[0].attn.conv_proj_q.bn.weight.grad.abs(
    ).sum() > 0
    for k, v in stats.items():
        assert torch.equal(fast.state_dict()[k], v), k


def test_train_with_dropout_and_gelu_take_the_plain_path(
        cvt_pair, img, tiny_arch):
    """Dropout inside the MLP and non-QuickGELU activations are not folded;
    the model still trains and every parameter gets a gradient."""
    for kwargs in (dict(drop_rate=0.1), dict(act_cfg=dict(type='GELU'))):
        fast, _ = cvt_pair(**kwargs)
        fast.train()
        fast(img(2, 3, 64, 64))[0].sum().backward()
        assert all(p.grad is not None for p in fast.parameters())
    assert not fp.folds_quick_gelu(
        CvT(tiny_arch, act_cfg=dict(type='GELU')).stages[0].blocks[0].mlp)


def _saved_bytes(model, *args, **kwargs):
    """Bytes of the tensors autograd saves for the backward (distinct
    storages), in one training forward."""
    storages = {}

    def pack(t):
        if t.device.type == 'cpu' and t.numel() > 0:
            s = t.untyped_storage()
            storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(*args, **kwargs)
    return sum(storages.values())


def test_train_fast_paths_save_less(cvt_pair, img):
    fast, ref = cvt_pair(out_indices=(2, ), out_type='cls_token')
    fast.train(), ref.train()
    x = img(2, 3, 96, 96)
    fast_bytes, ref_bytes = _saved_bytes(fast, x), _saved_bytes(ref, x)
    # QuickGELU alone keeps three hidden-sized tensors in the reference
    assert fast_bytes < 0.8 * ref_bytes, (fast_bytes, ref_bytes)


def test_autocast_bf16_fast_matches_reference(cvt_pair, img):
    fast, ref = cvt_pair(out_indices=(0, 1, 2), out_type='cls_token')
    fast.train(), ref.train()
    x = img(2, 3, 64, 64)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs_f, outs_r = fast(x), ref(x)
    for a, b in zip(outs_f, outs_r):
        assert a.dtype == b.dtype
        assert (a.float() - b.float()).abs().max() < 5e-2
    sum(o.float().sum() for o in outs_f).backward()
    sum(o.float().sum() for o in outs_r).backward()
    largest = max(q.grad.abs().max() for q in ref.parameters())
    for (name, p), q in zip(fast.named_parameters(), ref.parameters()):
        assert p.grad.dtype == torch.float32 and torch.isfinite(
            p.grad).all(), name
        assert (p.grad - q.grad).abs().max() < 2e-2 * largest, name
        if q.grad.abs().max() > 1e-2 * largest:  # not zero up to rounding
            cos = torch.cosine_similarity(p.grad.flatten(), q.grad.flatten(),
                                          0)
            assert cos > 0.99, (name, cos)


def test_torch_compile_training_step_equals_eager(assert_grads_close,
                                                  compile_arch, img):
    """fullgraph: no graph break; the compiled forward and backward match
    eager, and the BatchNorm statistics are updated once."""
    torch.manual_seed(0)
    model = CvT(compile_arch, out_indices=(0, 1, 2)).train()
    model.init_weights()
    eager = copy.deepcopy(model)
    compiled = torch.compile(model, fullgraph=True)
    x = img(2, 3, 64, 48)
    outs_c, outs_e = compiled(x), eager(x)
    for a, b in zip(outs_c, outs_e):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    sum(o.sum() for o in outs_c).backward()
    sum(o.sum() for o in outs_e).backward()
    assert_grads_close(model, eager, rtol=1e-3)
    for (name, b1), b2 in zip(model.named_buffers(), eager.buffers()):
        torch.testing.assert_close(b1, b2, msg=name)


def test_train_projection_and_mlp_save_less():
    """Per layer: the projection keeps only its input (not the BatchNorm
    input too); the MLP keeps x and the pre-activation (QuickGELU's
    reference keeps three hidden-sized tensors)."""
    torch.manual_seed(0)
    train = Plan(Path.FUSED_TRAIN)
    proj = DWConvBN(8, 3, 2, 1).train()
    x = torch.randn(2, 8, 16, 16, requires_grad=True)
    fast_bytes = _saved_bytes(proj, x, train)
    ref_bytes = _saved_bytes(proj, x)
    # reference: x + the conv output (1/4 of x, stride 2); fast: x, plus
    # in both the small weights and statistics (< 1 kB here)
    assert fast_bytes < x.nbytes + 1024, fast_bytes
    assert ref_bytes >= x.nbytes + x.nbytes // 4, ref_bytes

    mlp = Mlp(8, 32, dict(type='QuickGELU')).train()
    x = torch.randn(2, 10, 8, requires_grad=True)
    fast_bytes = _saved_bytes(mlp, x, train)
    ref_bytes = _saved_bytes(mlp, x)
    hidden = x.nbytes * 4
    assert fast_bytes <= x.nbytes + hidden + 2 * 1024, fast_bytes
    assert ref_bytes >= x.nbytes + 3 * hidden, ref_bytes


@pytest.mark.parametrize('silu', [False, True])
@pytest.mark.parametrize('onednn', [True, False])
def test_inference_linear_equals_f_linear(silu, onednn, monkeypatch):
    """``onednn_linear``: oneDNN (bias and silu fused) where usable, else
    ``F.linear``; the same numbers either way, for 2-D / 3-D and
    non-contiguous inputs. The plan takes the oneDNN path in fp32 CPU
    inference only where it is usable."""
    if not onednn:
        monkeypatch.setitem(ti._ONEDNN_LINEAR, 'op', None)
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(24, 16, generator=g), torch.randn(24, generator=g)
    for x in (torch.randn(37, 16, generator=g),
              torch.randn(3, 11, 16, generator=g),
              torch.randn(16, 3, 11, generator=g).permute(1, 2, 0)):
        ref = torch.nn.functional.linear(x, w, b)
        if silu:
            ref = torch.nn.functional.silu(ref)
        with torch.no_grad():
            onednn_path = decide_plan(x, True, []).path is Path.ONEDNN_INFER
            assert onednn_path == ti.onednn_linear_usable()
            out = ti.onednn_linear(x, w, b, silu=silu)
        assert out.shape == ref.shape
        assert (out - ref).abs().max() < 1e-5
        # with autograd the plan is not the oneDNN one
        assert decide_plan(x, True, []).path is Path.FUSED_TRAIN


def test_onednn_linear_available_here():
    """The fp32 CPU inference speed-up relies on it; torch builds for x86
    ship oneDNN."""
    import platform
    if platform.machine().lower() in ('x86_64', 'amd64'):
        assert ti.onednn_linear_usable()


@pytest.mark.parametrize('mode', ['infer', 'train'])
def test_flop_count_fast_equals_reference(cvt_pair, img, mode, monkeypatch):
    """FLOP counters see the same matmuls on the fast paths (they fall back
    to whole standard ops under a dispatch mode)."""
    from torch.utils.flop_counter import FlopCounterMode
    monkeypatch.setattr(kernels, 'MLP_CHUNK_ELEMENTS', 6400)

    def count(model):
        model.train(mode == 'train')
        # with a formula for the CPU flash-attention kernel, which
        # FlopCounterMode lacks (the benchmark's)
        counter = FlopCounterMode(display=False,
                                  custom_mapping=sdpa_formulas())
        x = img(2, 3, 64, 64)
        if mode == 'infer':
            with counter, torch.no_grad():
                model(x)
        else:
            with counter:
                model(x)[0].sum().backward()
        return counter.get_total_flops()

    fast, ref = cvt_pair(out_indices=(2, ), out_type='cls_token')
    want = count(ref)
    assert count(fast) == want > 0
    # the counter sees these standard ops only because the fast model falls
    # back under it (a dispatch mode, with global module hooks): its own
    # paths differ (the projections' conv recomputed in the backward; oneDNN
    # linears the counter has no formula for)
    if mode == 'train' or ti.onednn_linear_usable():
        monkeypatch.setattr(fp, 'tools_watching_ops', lambda: False)
        monkeypatch.setattr(fp, 'has_hooks', lambda modules: False)
        assert count(fast) != want


def test_onednn_linear_failure_falls_back_once(cvt_pair, img, monkeypatch):
    """The private oneDNN op may change between torch releases: if it
    raises, inference falls back to F.linear for good, with one warning,
    and gives the same outputs."""
    fast, ref = cvt_pair()
    fast.eval()
    ref.eval()
    x = img(2, 3, 64, 64)
    calls = []

    def broken(*args):
        calls.append(1)
        raise RuntimeError('unknown op signature')

    monkeypatch.setitem(ti._ONEDNN_LINEAR, 'op', broken)
    with torch.no_grad(), pytest.warns(UserWarning, match='using F.linear'):
        out = fast(x)[0]
    assert len(calls) == 1 and not ti.onednn_linear_usable()
    with torch.no_grad():
        assert decide_plan(x, True, []).path is Path.FUSED_INFER
        torch.testing.assert_close(fast(x)[0], out)
        torch.testing.assert_close(out, ref(x)[0], rtol=1e-4, atol=1e-5)
    assert len(calls) == 1


def test_private_api_fallbacks(monkeypatch):
    """Each private torch API has a fallback where torch lacks it: global
    hooks assumed (the reference path, never wrong), no dispatch mode, no
    native bf16."""
    import sys
    mod = nn.modules.module
    assert ti.global_forward_hooks() is False
    handle = nn.modules.module.register_module_forward_hook(
        lambda *a: None)
    assert ti.global_forward_hooks() is True
    handle.remove()
    monkeypatch.delattr(mod, '_global_forward_hooks')
    monkeypatch.delattr(mod, '_global_forward_pre_hooks')
    assert ti.global_forward_hooks() is True
    assert decide_plan(torch.zeros(1), True, []) == REFERENCE_PLAN
    monkeypatch.undo()

    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False):
        assert ti.in_torch_dispatch_mode()
    monkeypatch.setitem(sys.modules, 'torch.utils._python_dispatch', None)
    assert ti.in_torch_dispatch_mode() is False

    def missing():
        raise AttributeError('no such op')

    ti.native_bf16_matmul.cache_clear()
    monkeypatch.setattr(torch.ops.mkldnn, '_is_mkldnn_bf16_supported',
                        missing, raising=False)
    try:
        assert ti.native_bf16_matmul() is False
    finally:
        monkeypatch.undo()
        ti.native_bf16_matmul.cache_clear()


@pytest.mark.parametrize('where', ['mlp.fc1', 'mlp.fc2', 'mlp.act', 'mlp',
                                   'norm2', 'global'])
def test_hooks_see_whole_tensors(cvt_pair, img, where):
    """A forward hook on any module of the MLP branch (or a global one) sees
    the block's whole token tensor once per forward, not one call per
    chunk of the chunked CPU-inference MLP."""
    fast, _ = cvt_pair()
    fast.eval()
    block = fast.stages[0].blocks[0]
    seen = []

    def hook(module, args, output):
        if module is target:
            seen.append(output.shape)

    if where == 'global':
        target = block.mlp.fc1
        handle = nn.modules.module.register_module_forward_hook(hook)
    else:
        target = block.get_submodule(where)
        handle = target.register_forward_hook(hook)
    try:
        old = kernels.MLP_CHUNK_ELEMENTS
        kernels.MLP_CHUNK_ELEMENTS = 256  # many chunks for a 16x16 grid
        with torch.no_grad():
            fast(img(2, 3, 64, 64))
    finally:
        kernels.MLP_CHUNK_ELEMENTS = old
        handle.remove()
    assert len(seen) == 1 and seen[0][:2] == (2, 16 * 16)


def test_cpu_autocast_training_runs_projections_in_fp32(monkeypatch):
    """Under CPU mixed precision the depth-wise projections train through
    the recomputing kernel in fp32 (their half-precision backward is the
    slowest kernel of a bf16 step), matching fp32 bn(conv(x)) closely;
    inference keeps them in the autocast dtype."""
    calls = []
    kernel = kernels.dw_conv_bn_train

    def spy(x, conv, bn):
        calls.append(x.dtype)
        return kernel(x, conv, bn)

    monkeypatch.setattr(kernels, 'dw_conv_bn_train', spy)
    torch.manual_seed(0)
    proj = DWConvBN(8, 3, 2, 1).train()
    ref = copy.deepcopy(proj)
    x = torch.randn(2, 8, 12, 12, requires_grad=True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = proj(x, decide_plan(x, True, []))
    assert calls == [torch.float32] and out.dtype == torch.float32
    torch.testing.assert_close(out, ref(x), rtol=1e-5, atol=1e-5)
    out.sum().backward()
    assert x.grad is not None and proj.conv.weight.grad is not None
    proj.eval()
    with torch.autocast('cpu', dtype=torch.bfloat16), torch.no_grad():
        assert proj(x, decide_plan(x, True, [])).dtype == torch.bfloat16
    assert len(calls) == 1


@pytest.mark.parametrize('training', [False, True], ids=['eval', 'train'])
def test_bf16_autocast_outputs_are_fp32_outputs_to_bf16_precision(
        cvt_pair, img, training):
    """CPU bf16 autocast on the fast paths (oneDNN linears and the chunked
    explicit attention in bf16, LayerNorm and softmax statistics in fp32,
    the training projections in fp32) gives every output of the fp32 model
    to bf16 precision, and the weights stay fp32. Measured: max error
    0.6-0.8% of the largest output, mean error 0.4-0.6% of the mean
    magnitude."""
    fast, _ = cvt_pair(out_indices=(0, 1, 2), out_type='featmap')
    fast.train(training)
    x = img(2, 3, 64, 48)
    with torch.no_grad():
        want = fast(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            got = fast(x)
    for a, b in zip(got, want):
        assert a.shape == b.shape and b.dtype == torch.float32
        err = (a.float() - b).abs()
        scale = b.abs().max()
        # bf16 keeps 8 significant bits (relative step 2**-8 = 0.4%);
        # three stages of rounding stay within a few steps
        assert err.max() < 0.02 * scale, (err.max(), scale)
        assert err.mean() < 0.01 * b.abs().mean(), (err.mean(),
                                                   b.abs().mean())
    assert all(p.dtype == torch.float32 for p in fast.parameters())
