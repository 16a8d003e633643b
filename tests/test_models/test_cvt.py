"""Unit tests of the CvT backbone (mmcvt/models/backbones/cvt.py).

Real archs are exercised on the ``meta`` device (shapes, parameter counts,
FLOPs: no memory, no compute); numerics use a tiny custom arch.
"""
import copy
import itertools
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.flop_counter import FlopCounterMode

from mmcvt.models import CvT
from mmcvt.models.backbones.cvt import ConvAttention
from mmcvt.models.layers import DropPath, QuickGELU, decide_plan

ZOO = ['13', '21', 'w24']
ALIASES = {'13': 'cvt-13', '21': 'cvt-21', 'w24': 'cvt-w24'}
STRIDES = (4, 8, 16)


pytestmark = pytest.mark.usefixtures('one_torch_thread')


def _meta(arch, **kwargs):
    with torch.device('meta'):
        return CvT(arch, **kwargs)


def _dims(arch):
    return CvT.arch_zoo[arch]['embed_dims'] if isinstance(arch,
                                                          str) else arch[
                                                              'embed_dims']


# ---------------------------------------------------------------------------
# arch zoo, parameter counts, FLOPs
# ---------------------------------------------------------------------------


# MODEL.SPEC of the official experiments/imagenet/cvt/cvt-*.yaml
OFFICIAL_SPECS = {
    '13': dict(embed_dims=[64, 192, 384], num_heads=[1, 3, 6],
               depths=[1, 2, 10], drop_path_rates=[0., 0., 0.1]),
    '21': dict(embed_dims=[64, 192, 384], num_heads=[1, 3, 6],
               depths=[1, 4, 16], drop_path_rates=[0., 0., 0.1]),
    'w24': dict(embed_dims=[192, 768, 1024], num_heads=[3, 12, 16],
                depths=[2, 2, 20], drop_path_rates=[0., 0., 0.3]),
}


@pytest.mark.parametrize('arch', ZOO)
def test_arch_aliases(arch):
    """Every name of a variant builds the official yaml's model."""
    spec = OFFICIAL_SPECS[arch]
    for name in (arch, ALIASES[arch], ALIASES[arch].upper()):
        model = _meta(name)
        assert model.embed_dims == spec['embed_dims'], name
        assert model.num_heads == spec['num_heads'], name
        assert model.depths == spec['depths'], name
        assert model.drop_path_rates == spec['drop_path_rates'], name
        assert [len(s.blocks) for s in model.stages] == spec['depths']
        assert [s.blocks[0].attn.num_heads
                for s in model.stages] == spec['num_heads']


@pytest.mark.parametrize('arch,expected', [('13', 19_997_480),
                                           ('21', 31_622_696),
                                           ('w24', 277_196_392)])
def test_param_count(arch, expected):
    model = _meta(arch)
    head = 1000 * _dims(arch)[-1] + 1000  # 1000-class Linear head
    assert sum(p.numel() for p in model.parameters()) + head == expected


@pytest.mark.parametrize('arch,size,gmacs', [('13', 224, 4.57),
                                             ('21', 224, 7.18),
                                             ('13', 384, 16.27),
                                             ('w24', 384, 194.2)])
def test_flops(arch, size, gmacs):
    # Convs, linears and the two attention matmuls of the real model, run on
    # the meta device (SDPA decomposes into the two bmm's there).
    model = _meta(arch).eval()
    x = torch.empty(1, 3, size, size, device='meta')
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        feat = model(x)[0]
    counts = {
        str(k): v
        for k, v in counter.get_flop_counts()['Global'].items()
    }
    assert counts.get('aten.bmm', 0) > 0, 'attention matmuls not counted'
    macs = counter.get_total_flops() / 2 + feat.shape[-1] * 1000  # + head
    assert abs(macs / 1e9 - gmacs) / gmacs < 0.01, macs / 1e9


def test_flops_match_naive_attention_on_real_tensors(tiny_arch, tiny_cvt):
    """The meta-device count equals a count on real tensors (naive path)."""
    model = tiny_cvt().eval().set_fused(False)
    counts = []
    for device in ('cpu', 'meta'):
        model_d = model if device == 'cpu' else _meta(tiny_arch).eval()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model_d(torch.zeros(1, 3, 64, 96, device=device))
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1]


# ---------------------------------------------------------------------------
# outputs
# ---------------------------------------------------------------------------

SUBSETS = [
    s for n in range(1, 4) for s in itertools.combinations(range(3), n)
]


@pytest.mark.parametrize('arch', ZOO + ['tiny'])
@pytest.mark.parametrize('out_indices', SUBSETS)
def test_featmap_shapes_and_strides(tiny_arch, arch, out_indices):
    arch = tiny_arch if arch == 'tiny' else arch
    model = _meta(arch, out_indices=out_indices, out_type='featmap')
    outs = model(torch.empty(2, 3, 224, 320, device='meta'))
    assert len(outs) == len(out_indices)
    for out, i in zip(outs, out_indices):
        assert out.shape == (2, _dims(arch)[i], 224 // STRIDES[i],
                             320 // STRIDES[i])


@pytest.mark.parametrize('arch', ZOO)
def test_negative_out_indices(arch):
    model = _meta(arch, out_indices=(-3, -1), out_type='featmap')
    assert model.out_indices == [0, 2]


@pytest.mark.parametrize('arch', ZOO)
@pytest.mark.parametrize('out_type,shape', [
    ('cls_token', lambda c: (2, c)),
    ('avg_featmap', lambda c: (2, c)),
    ('featmap', lambda c: (2, c, 14, 14)),
    ('raw', lambda c: (2, 1 + 14 * 14, c)),
])
def test_out_types_zoo(arch, out_type, shape):
    model = _meta(arch, out_indices=(0, 1, 2), out_type=out_type)
    outs = model(torch.empty(2, 3, 224, 224, device='meta'))
    dims = _dims(arch)
    assert outs[0].shape == (2, dims[0], 56, 56)
    assert outs[1].shape == (2, dims[1], 28, 28)
    assert outs[2].shape == shape(dims[2])


def test_out_type_semantics(img, tiny_cvt):
    x = img(2, 3, 64, 64)
    raw = tiny_cvt(out_type='raw').eval()
    tokens = raw(x)[0]  # (B, 1+4*4, C)
    assert tokens.shape == (2, 17, 48)
    norm = nn.LayerNorm(48, eps=1e-5)
    cls = tiny_cvt(out_type='cls_token').eval()
    norm.load_state_dict(cls.norm.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(cls(x)[0], norm(tokens[:, 0]))
        avg = tiny_cvt(out_type='avg_featmap').eval()
        torch.testing.assert_close(avg(x)[0], norm(tokens[:, 1:]).mean(1))
        feat = tiny_cvt(out_type='featmap').eval()(x)[0]
        torch.testing.assert_close(
            feat, tokens[:, 1:].transpose(1, 2).reshape(2, 48, 4, 4))
    assert feat.is_contiguous()
    # no final norm
    nonorm = tiny_cvt(final_norm=False).eval()
    assert nonorm.norm is None
    with torch.no_grad():
        torch.testing.assert_close(nonorm(x)[0], tokens[:, 0])


def test_avg_featmap_without_cls_token(img, tiny_cvt):
    model = tiny_cvt(cls_token=False, out_type='avg_featmap').eval()
    assert model.stages[2].cls_token is None
    out = model(img(1, 3, 64, 64))[0]
    assert out.shape == (1, 48)
    raw = tiny_cvt(cls_token=False, out_type='raw').eval()(img(1, 3, 64, 64))
    assert raw[0].shape == (1, 16, 48)


def test_out_norm(img, tiny_cvt):
    model = tiny_cvt(out_indices=(0, 1, 2), out_type='featmap', out_norm=True)
    for i in range(3):
        assert isinstance(getattr(model, f'out_norm{i}'), nn.LayerNorm)
    model.out_norm1.weight.data.fill_(2.)
    ref = tiny_cvt(out_indices=(0, 1, 2), out_type='featmap').eval()
    model.eval()
    x = img(1, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x), ref(x)
    f = b[1]
    expected = F.layer_norm(f.permute(0, 2, 3, 1), (32, ), eps=1e-5) * 2
    torch.testing.assert_close(a[1], expected.permute(0, 3, 1, 2))
    # the class-token output of the last stage gets no out_norm
    model = tiny_cvt(out_indices=(1, 2), out_norm=True)
    assert hasattr(model, 'out_norm1') and not hasattr(model, 'out_norm2')


def test_stages_after_last_out_index_are_skipped(img, tiny_cvt):
    model = tiny_cvt(out_indices=(0, ), out_type='featmap')
    model(img(1, 3, 64, 64))[0].sum().backward()
    assert model.stages[0].patch_embed.proj.weight.grad is not None
    assert model.stages[2].patch_embed.proj.weight.grad is None


# ---------------------------------------------------------------------------
# training behaviour
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('out_type', CvT.OUT_TYPES)
@pytest.mark.parametrize('qkv_proj', ['dw_bn', 'avg', 'linear'])
def test_backward_every_param_gets_grad(img, tiny_cvt, out_type, qkv_proj):
    model = tiny_cvt(
        out_indices=(0, 1, 2),
        out_type=out_type,
        qkv_proj=qkv_proj,
        out_norm=True,
        pos_embed=True,
        img_size=64)
    model.train()
    outs = model(img(2, 3, 64, 64))
    sum(o.float().pow(2).mean() for o in outs).backward()
    for name, p in model.named_parameters():
        assert p.requires_grad and p.grad is not None, name


@pytest.mark.parametrize('fused', [True, False])
def test_with_cp_equals_plain(img, tiny_arch, tiny_cvt, fused):
    """Checkpointing changes memory only: the same outputs, gradients and
    BatchNorm statistics (updated once per step, although the backward runs
    each block's forward again)."""
    torch.manual_seed(0)
    plain = tiny_cvt(out_indices=(0, 1, 2), out_type='raw', drop_path_rate=0.)
    plain.set_fused(fused)
    ckpt = copy.deepcopy(plain)
    ckpt.with_cp = True
    for s in ckpt.stages:
        s.with_cp = True
    plain.train()
    ckpt.train()
    x = img(2, 3, 64, 64)
    outs_a = plain(x)
    outs_b = ckpt(x)
    for a, b in zip(outs_a, outs_b):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    sum(o.sum() for o in outs_a).backward()
    sum(o.sum() for o in outs_b).backward()
    for (n, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=n)
    buffers = dict(ckpt.named_buffers())
    assert any(n.endswith('num_batches_tracked') for n in buffers)
    for n, b in plain.named_buffers():
        torch.testing.assert_close(buffers[n], b, rtol=0, atol=0, msg=n)
        if n.endswith('num_batches_tracked'):
            assert int(buffers[n]) == 1, n
    # built with with_cp=True
    assert all(s.with_cp for s in CvT(tiny_arch, with_cp=True).stages)


@pytest.mark.parametrize('frozen_stages', [0, 1, 2, 3])
def test_frozen_stages(img, tiny_cvt, frozen_stages):
    model = tiny_cvt(
        frozen_stages=frozen_stages,
        out_indices=(0, 1, 2),
        out_type='cls_token',
        out_norm=True)
    model.train()
    outs = model(img(2, 3, 64, 64))
    loss = sum(o.sum() for o in outs)
    if loss.requires_grad:  # everything frozen when frozen_stages == 3
        loss.backward()
    for i, stage in enumerate(model.stages):
        frozen = i < frozen_stages
        for m in stage.modules():
            assert m.training != frozen
        for name, p in stage.named_parameters():
            assert p.requires_grad != frozen, (i, name)
            assert (p.grad is None) == frozen, (i, name)
        if hasattr(model, f'out_norm{i}'):
            assert getattr(model, f'out_norm{i}').training != frozen
    assert model.norm.weight.requires_grad == (frozen_stages < 3)
    assert model.norm.training == (frozen_stages < 3)
    # the frozen BN statistics must not move
    if frozen_stages >= 1:
        bn = model.stages[0].blocks[0].attn.conv_proj_k.bn
        before = bn.running_mean.clone()
        model.train()
        model(img(2, 3, 64, 64))
        torch.testing.assert_close(bn.running_mean, before)


def test_norm_eval(tiny_cvt):
    model = tiny_cvt(norm_eval=True)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not m.training for m in bns)
    assert model.stages[0].blocks[0].norm1.training  # LayerNorm untouched
    model = tiny_cvt(norm_eval=False)
    model.train()
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize('drop_path_rate,expected', [
    (None, [0., 0., 0.1]),
    (0.3, [0., 0., 0.3]),
    ([0.05, 0.1, 0.2], [0.05, 0.1, 0.2]),
])
def test_drop_path_rates(drop_path_rate, expected):
    model = _meta('13', drop_path_rate=drop_path_rate)
    assert model.drop_path_rates == pytest.approx(expected)
    for stage, rate, depth in zip(model.stages, expected, [1, 2, 10]):
        got = [
            b.drop_path.drop_prob if isinstance(b.drop_path, DropPath) else 0.
            for b in stage.blocks
        ]
        assert got == pytest.approx(
            torch.linspace(0, rate, depth).tolist(), abs=1e-7)


def test_dropout_train_mode_runs(img, tiny_cvt):
    model = tiny_cvt(drop_rate=0.1, attn_drop_rate=0.1, drop_path_rate=0.2)
    model.train()
    a = model(img(2, 3, 64, 64))[0]
    assert torch.isfinite(a).all()


# ---------------------------------------------------------------------------
# numerics
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('shape', [(1, 3, 64, 64), (2, 3, 333, 517),
                                   (1, 3, 48, 80)])
def test_any_resolution_and_batch_one(img, tiny_arch, tiny_cvt, shape):
    model = tiny_cvt(out_indices=(0, 1, 2), out_type='cls_token').eval()
    outs = model(img(*shape))
    h, w = shape[2:]
    for out, i in zip(outs[:2], range(2)):
        hh, ww = (h + 4 - 7) // 4 + 1, (w + 4 - 7) // 4 + 1
        for _ in range(i):
            hh, ww = (hh - 1) // 2 + 1, (ww - 1) // 2 + 1
        assert out.shape == (shape[0], tiny_arch['embed_dims'][i], hh, ww)
    assert outs[2].shape == (shape[0], 48)
    # batch 1 equals the same image inside a batch
    if shape[0] == 2:
        single = model(img(*shape)[1:])
        torch.testing.assert_close(single[2], outs[2][1:], atol=1e-5,
                                   rtol=0)


@pytest.mark.parametrize('arch', ZOO)
def test_zoo_any_resolution_meta(arch):
    model = _meta(arch, out_indices=(0, 1, 2), out_type='featmap')
    outs = model(torch.empty(1, 3, 333, 517, device='meta'))
    assert [tuple(o.shape[2:]) for o in outs] == [(83, 129), (42, 65),
                                                  (21, 33)]


def test_deploy_equals_plain(img, tiny_cvt):
    model = tiny_cvt(out_indices=(0, 1, 2), out_type='raw').eval()
    x = img(2, 3, 80, 64)
    with torch.no_grad():
        ref = model(x)
        model.switch_to_deploy()
        out = model(x)
    assert model.deploy
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model.stages[0].blocks[0].attn.conv_proj_q.conv.bias is not None
    for a, b in zip(ref, out):
        assert (a - b).abs().max() < 1e-5
    # fuse_bn is an alias and idempotent
    model.fuse_bn()


def test_sdpa_equals_naive_attention(img, randomise_bn):
    """The attention's fast form (SDPA) against the explicit softmax, with
    and without a class token."""
    torch.manual_seed(0)
    for cls_token in (False, True):
        attn = ConvAttention(16, 2, with_cls_token=cls_token).eval()
        randomise_bn(attn)
        x = img(2, int(cls_token) + 8 * 6, 16)
        with torch.no_grad():
            plan = decide_plan(x, True, [])
            assert plan.fast
            fused, naive = attn(x, (8, 6), plan), attn(x, (8, 6))
        assert (fused - naive).abs().max() < 1e-5


def test_attention_matches_explicit_official_formula(randomise_bn):
    """Scale = full width ** -0.5, class token joins after the projection."""
    torch.manual_seed(0)
    attn = ConvAttention(8, 2, with_cls_token=True).eval()
    randomise_bn(attn)
    h, w = 3, 5
    x = torch.randn(2, 1 + h * w, 8)
    with torch.no_grad():
        out = attn(x, (h, w))
        cls_tok, t = x[:, :1], x[:, 1:]
        grid = t.transpose(1, 2).reshape(2, 8, h, w)

        def proj(p):
            return p.bn(p.conv(grid)).flatten(2).transpose(1, 2)

        q = torch.cat([cls_tok, proj(attn.conv_proj_q)], 1)
        k = torch.cat([cls_tok, proj(attn.conv_proj_k)], 1)
        v = torch.cat([cls_tok, proj(attn.conv_proj_v)], 1)
        q, k, v = [
            lin(a).reshape(2, -1, 2, 4).permute(0, 2, 1, 3)
            for lin, a in ((attn.proj_q, q), (attn.proj_k, k), (attn.proj_v,
                                                                   v))
        ]
        a = torch.softmax(q @ k.transpose(-1, -2) * 8**-0.5, -1) @ v
        ref = attn.proj(a.permute(0, 2, 1, 3).reshape(2, -1, 8))
    assert k.shape[2] == 1 + 2 * 3  # kv stride 2 on a 3x5 grid
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)


def test_quick_gelu_and_gelu(tiny_arch):
    x = torch.linspace(-4, 4, 101)
    torch.testing.assert_close(QuickGELU()(x), x * torch.sigmoid(1.702 * x))
    model = CvT(tiny_arch, act_cfg=dict(type='GELU'))
    assert isinstance(model.stages[0].blocks[0].mlp.act, nn.GELU)
    assert isinstance(CvT(tiny_arch).stages[0].blocks[0].mlp.act, QuickGELU)
    assert model.stages[0].blocks[0].norm1.eps == 1e-5


# the smallest arch for torch.compile tests (compile time grows with depth)


def test_torch_compile_equals_eager(compile_arch, img, randomise_bn):
    torch.manual_seed(0)
    model = CvT(compile_arch, out_indices=(0, 1, 2)).eval()
    model.init_weights()
    randomise_bn(model)
    x = img(2, 3, 64, 48)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        ref = model(x)
        out = compiled(x)
    for a, b in zip(ref, out):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------
# options
# ---------------------------------------------------------------------------


def test_pos_embed_other_resolution(img, tiny_arch, tiny_cvt):
    model = tiny_cvt(pos_embed=True, img_size=64, out_type='featmap',
                  out_indices=(0, 1, 2)).eval()
    grids = [(16, 16), (8, 8), (4, 4)]
    for stage, grid, c in zip(model.stages, grids, tiny_arch['embed_dims']):
        assert stage.pos_embed.shape == (1, grid[0] * grid[1], c)
        assert stage.pos_embed.std() > 0
    outs = model(img(1, 3, 96, 128))
    assert [tuple(o.shape[2:]) for o in outs] == [(24, 32), (12, 16), (6, 8)]
    # the position embedding is bicubically resized: check stage 0 directly
    stage = model.stages[0]
    x = img(1, 3, 96, 128)
    with torch.no_grad():
        tokens, hw = stage.patch_embed(x)
        pos = F.interpolate(
            stage.pos_embed.reshape(1, 16, 16, 16).permute(0, 3, 1, 2),
            size=hw,
            mode='bicubic',
            align_corners=False).flatten(2).transpose(1, 2)
        ref = tokens + pos
        for blk in stage.blocks:
            ref = blk(ref, hw)
        got = stage(x)[0]
    torch.testing.assert_close(got, ref)
    # non-square img_size; only stage 1 with a position embedding
    model = tiny_cvt(pos_embed=(False, True, False), img_size=(64, 96))
    assert model.stages[0].pos_embed is None
    assert model.stages[1].pos_embed.shape == (1, 8 * 12, 32)


def test_patch_embed_patch(img, tiny_cvt):
    model = tiny_cvt(patch_embed='patch', out_indices=(0, 1, 2),
                  out_type='featmap').eval()
    proj = model.stages[0].patch_embed.proj
    assert proj.kernel_size == (4, 4) and proj.stride == (4, 4)
    assert proj.padding == (0, 0)
    assert model.stages[1].patch_embed.proj.kernel_size == (2, 2)
    outs = model(img(1, 3, 64, 96))
    assert [tuple(o.shape[2:]) for o in outs] == [(16, 24), (8, 12), (4, 6)]


@pytest.mark.parametrize('qkv_proj', ['avg', 'linear'])
def test_qkv_proj_variants(img, tiny_cvt, qkv_proj):
    model = tiny_cvt(qkv_proj=qkv_proj, out_type='raw').eval()
    attn = model.stages[1].blocks[0].attn
    assert attn.conv_proj_q is None
    if qkv_proj == 'avg':
        assert isinstance(attn.conv_proj_k, nn.AvgPool2d)
    else:
        assert attn.conv_proj_k is None and attn.conv_proj_v is None
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    out = model(img(1, 3, 64, 80))[0]
    assert out.shape == (1, 1 + 4 * 5, 48) and torch.isfinite(out).all()


def test_per_stage_knobs(img, tiny_cvt):
    model = tiny_cvt(
        qkv_proj=('dw_bn', 'avg', 'linear'),
        stride_kv=(2, 1, 2),
        proj_kernel=(3, 5, 3),
        proj_padding_kv=(1, 2, 1),
        mlp_ratio=(4, 2, 1),
        qkv_bias=(True, False, True),
        out_indices=(0, 1, 2),
        out_type='featmap')
    assert model.stages[0].blocks[0].attn.conv_proj_k.conv.stride == (2, 2)
    assert model.stages[1].blocks[0].attn.conv_proj_k.kernel_size == 5
    assert model.stages[1].blocks[0].attn.proj_q.bias is None
    assert model.stages[1].blocks[0].mlp.fc1.out_features == 64
    assert model.stages[2].blocks[0].mlp.fc1.out_features == 48
    model(img(1, 3, 64, 64))
    # 3-entry defaults adapt to other stage counts
    two = CvT(dict(embed_dims=[8, 16], num_heads=[1, 2], depths=[1, 1],
                   drop_path_rates=[0, 0]), out_indices=-1)
    assert two.patch_sizes == [7, 3] and two.with_cls_token == [False, True]
    assert two(img(1, 3, 32, 32))[0].shape == (1, 16)


def test_every_per_stage_argument_reaches_its_stage_spec(tiny_arch):
    """StageSpecs are built by name: each CvT argument, given a different
    value per stage, lands in its own field of its own stage (the renamed
    ones too: stride_q -> proj_stride_q, patch_sizes -> patch_size)."""
    import dataclasses
    fields = dict(  # CvT argument -> (StageSpec field, one value per stage)
        patch_sizes=('patch_size', [7, 5, 3]),
        patch_strides=('patch_stride', [4, 2, 1]),
        patch_paddings=('patch_padding', [3, 2, 1]),
        qkv_proj=('qkv_proj', ['dw_bn', 'avg', 'linear']),
        proj_kernel=('proj_kernel', [3, 5, 1]),
        proj_padding_q=('proj_padding_q', [1, 2, 0]),
        proj_padding_kv=('proj_padding_kv', [0, 1, 2]),
        stride_q=('proj_stride_q', [1, 1, 1]),
        stride_kv=('proj_stride_kv', [2, 3, 1]),
        cls_token=('cls_token', [True, False, True]),
        pos_embed=('pos_embed', [False, True, False]),
        mlp_ratio=('mlp_ratio', [4., 2., 3.]),
        qkv_bias=('qkv_bias', [False, True, False]),
        drop_path_rate=('drop_path_rate', [0.1, 0.2, 0.3]))
    with torch.device('meta'):
        model = CvT(tiny_arch, out_type='featmap',
                    **{arg: values for arg, (_, values) in fields.items()})
    for arg, (field, values) in fields.items():
        assert [getattr(s, field) for s in model.specs] == values, arg
    assert [s.embed_dims for s in model.specs] == tiny_arch['embed_dims']
    assert [s.depth for s in model.specs] == tiny_arch['depths']
    # every field comes from an argument or the arch
    names = {f.name for f in dataclasses.fields(model.specs[0])}
    assert names == {f for f, _ in fields.values()} | {
        'embed_dims', 'num_heads', 'depth'}
    with pytest.raises(TypeError, match='stride_qq'):
        CvT(tiny_arch, stride_qq=2)


def test_init_weights(tiny_arch):
    torch.manual_seed(0)
    model = CvT(tiny_arch)
    model.init_weights()
    fc1 = model.stages[2].blocks[0].mlp.fc1
    assert torch.all(fc1.bias == 0)
    # the official trunc_normal_(std=.02) truncates at +-2 (absolute), 100
    # standard deviations: in effect a plain N(0, 0.02^2). A truncation at
    # 2 std (timm's trunc_normal_tf_ style) would have std ~0.0176 and no
    # value beyond 0.04; a wrong std shows in the spread.
    w = torch.cat([
        m.weight.detach().flatten() for m in model.modules()
        if isinstance(m, nn.Linear)
    ])
    assert w.numel() > 40000
    assert w.std().item() == pytest.approx(0.02, rel=0.03)
    assert w.mean().abs() < 0.001
    beyond = (w.abs() > 0.06).float().mean().item()  # P(|z| > 3) = 0.27%
    assert 0.0015 < beyond < 0.004
    assert torch.all(model.stages[0].blocks[0].attn.conv_proj_q.bn.weight ==
                     1)
    assert torch.all(model.norm.weight == 1) and torch.all(model.norm.bias ==
                                                           0)
    cls = model.stages[2].cls_token
    assert 0 < cls.std() < 0.05


def test_registry_build(tiny_arch):
    from mmengine.registry import DefaultScope

    from mmcvt.registry import MODELS

    # other tests may leave another toolkit's default scope behind
    with DefaultScope.overwrite_default_scope('mmcvt'):
        model = MODELS.build(dict(type='CvT', arch=tiny_arch))
    assert isinstance(model, CvT)
    model = MODELS.build(dict(type='mmcvt.CvT', arch=tiny_arch))
    assert isinstance(model, CvT)


def test_import_is_light():
    """Importing mmcvt.models pulls in neither mmdet/mmseg/mmpretrain nor
    timm (nor mmcv)."""
    import subprocess
    code = ('import sys, mmcvt.models; bad = [m for m in sys.modules if '
            'm.split(".")[0] in ("mmdet", "mmseg", "mmpretrain", "timm", '
            '"mmcv")]; assert not bad, bad')
    subprocess.run([sys.executable, '-c', code], check=True)


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


def test_error_unknown_arch():
    with pytest.raises(ValueError, match=r"Unknown CvT arch \"cvt-99\".*"
                       r"'13'.*'21'.*'w24'"):
        CvT('cvt-99')


def test_error_incomplete_custom_arch(tiny_arch):
    bad = dict(embed_dims=[8, 16, 24], num_heads=[1, 2, 3])
    with pytest.raises(ValueError, match=r"missing the keys \['depths', "
                       r"'drop_path_rates'\]"):
        CvT(bad)
    bad = dict(tiny_arch, depths=[1, 1])
    with pytest.raises(ValueError, match='equal lengths'):
        CvT(bad)
    with pytest.raises(TypeError, match='arch must be a name'):
        CvT(13.0)
    with pytest.raises(ValueError, match=r"Unknown CvT arch \"24\"; valid"):
        CvT(24)


@pytest.mark.parametrize('arch', [13, 21])
def test_arch_as_an_int(arch):
    """`--cfg-options model.backbone.arch=13` arrives as the int 13."""
    with torch.device('meta'):
        a, b = CvT(arch), CvT(f'cvt-{arch}')
    assert (a.arch_name, a.arch_settings) == (b.arch_name, b.arch_settings)


@pytest.mark.parametrize('fused', [True, False])
@pytest.mark.parametrize('grad', [False, True], ids=['infer', 'train'])
def test_empty_batch(img, tiny_cvt, fused, grad):
    """A batch of 0 images gives empty maps on every path (the chunked CPU
    inference MLP divided by zero)."""
    model = tiny_cvt(out_indices=(0, 1, 2)).eval().set_fused(fused)
    with torch.set_grad_enabled(grad):
        outs = model(img(0, 3, 64, 48))
    assert [tuple(o.shape) for o in outs] == [(0, 16, 16, 12), (0, 32, 8, 6),
                                              (0, 48)]


@pytest.mark.parametrize('out_indices', [(3, ), (-4, ), (0, 5)])
def test_error_out_indices(tiny_arch, out_indices):
    with pytest.raises(ValueError, match=r'must be an int in \[-3, 2\]'):
        CvT(tiny_arch, out_indices=out_indices)


@pytest.mark.parametrize('frozen_stages', [-2, 4])
def test_error_frozen_stages(tiny_arch, frozen_stages):
    with pytest.raises(ValueError, match=r'frozen_stages.*\[-1, 3\]'):
        CvT(tiny_arch, frozen_stages=frozen_stages)


def test_error_out_type(tiny_arch):
    with pytest.raises(ValueError, match='Unsupported out_type "foo"'):
        CvT(tiny_arch, out_type='foo')
    with pytest.raises(ValueError, match='needs a class token in the last'):
        CvT(tiny_arch, cls_token=False)


def test_error_options(tiny_arch):
    with pytest.raises(ValueError, match='Unknown qkv_proj "conv"'):
        CvT(tiny_arch, qkv_proj='conv')
    with pytest.raises(ValueError, match='Unknown patch_embed "foo"'):
        CvT(tiny_arch, patch_embed='foo')
    with pytest.raises(ValueError, match=r'patch_sizes needs one entry per '
                       r'stage \(3\)'):
        CvT(tiny_arch, patch_sizes=(7, 3))
    with pytest.raises(ValueError, match='divisible by num_heads'):
        CvT(dict(tiny_arch, num_heads=[3, 2, 3]))
    with pytest.raises(ValueError, match=r'Stage 1: the q projection .* '
                       r'use stride_q=1'):
        CvT(tiny_arch, stride_q=(1, 2, 1))
    with pytest.raises(ValueError, match='must keep the token grid'):
        CvT(tiny_arch, proj_kernel=5)  # needs proj_padding_q=2
    CvT(tiny_arch, proj_kernel=5, proj_padding_q=2, proj_padding_kv=2)
    with pytest.raises(ValueError, match='norm_cfg type "LN" only'):
        CvT(tiny_arch, norm_cfg=dict(type='BN'))
    with pytest.raises(ValueError, match='Unknown act_cfg type'):
        CvT(tiny_arch, act_cfg=dict(type='NoSuchAct'))


@pytest.mark.parametrize('kwargs,match', [
    (dict(drop_path_rate=1.0), 'drop_path_rate must be a probability'),
    (dict(drop_path_rate=-0.1), 'drop_path_rate must be a probability'),
    (dict(drop_path_rate=(0., 0.2, 1.5)), 'got 1.5'),
    (dict(drop_rate=1.0), 'drop_rate must be'),
    (dict(attn_drop_rate=-1.), 'attn_drop_rate must be'),
    (dict(in_channels=0), 'in_channels must be a positive int'),
    (dict(in_channels=2.5), 'in_channels must be a positive int'),
])
def test_error_bad_rates_and_channels(tiny_arch, kwargs, match):
    with pytest.raises(ValueError, match=match):
        CvT(tiny_arch, **kwargs)


@pytest.mark.parametrize('dtype', [torch.uint8, torch.int64])
def test_error_integer_input(tiny_arch, dtype):
    model = CvT(tiny_arch).eval()
    x = torch.zeros(1, 3, 32, 32, dtype=dtype)
    with pytest.raises(TypeError, match='floating-point image tensor'):
        model(x)


def test_error_input_dtype_differs_from_weights(tiny_arch):
    model = CvT(tiny_arch).eval()
    with pytest.raises(TypeError, match=r'torch.float64 but its weights are '
                       r'torch.float32.*x.to\(torch.float32\)'):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.float64))
    # what the message suggests works; so does autocast
    assert model.double()(torch.zeros(1, 3, 32, 32,
                                      dtype=torch.float64))[0].dtype == \
        torch.float64
    model.float()
    with torch.autocast('cpu', dtype=torch.bfloat16), torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
        # autocast casts float32 inputs only
        with pytest.raises(TypeError, match='torch.float64 but its weights'):
            model(torch.zeros(1, 3, 32, 32, dtype=torch.float64))


def test_load_shape_mismatch_is_an_error(tiny_arch, tiny_cvt, tmp_path):
    """A checkpoint tensor of another shape does not leave that layer at
    its random initialisation with only a log line."""
    source = tiny_cvt()
    sd = {'backbone.' + k: v for k, v in source.state_dict().items()}
    key = 'backbone.stages.1.blocks.0.mlp.fc1.weight'
    sd[key] = torch.zeros(64, 32)  # this arch has mlp_ratio 4: (128, 32)
    path = tmp_path / 'ckpt.pth'
    torch.save({'state_dict': sd}, path)
    model = CvT(tiny_arch, init_cfg=dict(
        type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    with pytest.raises(ValueError, match=r'stages\.1\.blocks\.0\.mlp\.fc1'
                       r'\.weight: checkpoint \(64, 32\), model \(128, 32\)'):
        model.init_weights()


def test_load_resizes_pos_embed(tiny_arch):
    """Position embeddings trained at one size load into a model built for
    another (bicubically resized), as for fine-tuning 224 -> 384."""
    src = CvT(tiny_arch, pos_embed=True, img_size=64)
    dst = CvT(tiny_arch, pos_embed=True, img_size=96)
    sd = src.state_dict()
    assert sd['stages.0.pos_embed'].shape[1] == 16 * 16
    missing, unexpected = dst.load_state_dict(sd, strict=True)
    assert dst.stages[0].pos_embed.shape[1] == 24 * 24
    from mmcvt.models.layers import resize_pos_embed
    torch.testing.assert_close(
        dst.stages[0].pos_embed.data,
        resize_pos_embed(sd['stages.0.pos_embed'], (16, 16), (24, 24)))


def test_error_wrong_channels(tiny_arch):
    model = CvT(tiny_arch)
    with pytest.raises(ValueError, match=r'expected in_channels=3 input '
                       r'channels, got 1'):
        model(torch.zeros(1, 1, 64, 64))
    with pytest.raises(ValueError, match=r'\(B, C, H, W\)'):
        model(torch.zeros(3, 64, 64))
    model = CvT(tiny_arch, in_channels=1)
    assert model(torch.zeros(1, 1, 64, 64))[0].shape == (1, 48)


def test_error_too_small(tiny_arch):
    model = CvT(tiny_arch).eval()
    assert model.min_input_size() == 3
    model(torch.zeros(1, 3, 3, 3))  # the smallest input works
    with pytest.raises(ValueError, match=r'2x64 is too small: stage 0 .*'
                       r'minimum input size is 3x3'):
        model(torch.zeros(1, 3, 2, 64))
    patch = CvT(tiny_arch, patch_embed='patch').eval()
    assert patch.min_input_size() == 16
    with pytest.raises(ValueError, match=r'stage 2 .*minimum input size is '
                       r'16x16'):
        patch(torch.zeros(1, 3, 15, 64))
