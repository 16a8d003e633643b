# Copyright (c) mmcvt contributors. All rights reserved.
"""The implementations the benchmark compares, on the same weights: the
HuggingFace ``transformers`` CvT (the reference), mmcvt's classifier and its
variants (deploy, compile, reference formulation, checkpointing), and any
user factory; and the output parity check between them."""
import copy
import importlib
import inspect
from typing import Callable, Dict, List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

NUM_CLASSES = 1000
BUILTIN_IMPLS = ('mmcvt', 'mmcvt-deploy', 'mmcvt-compile',
                 'mmcvt-reference', 'mmcvt-cp', 'hf')
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


def parse_size(text: str):
    """``'224'`` -> 224 (square), ``'800x1333'`` -> (800, 1333) (H, W)."""
    parts = str(text).lower().split('x')
    try:
        hw_ = [int(p) for p in parts]
    except ValueError:
        hw_ = []
    if len(hw_) not in (1, 2) or min(hw_) < 1:
        raise ValueError(f'an input size is S or HxW, e.g. 224 or 800x1333; '
                         f'got {text!r}')
    return hw_[0] if len(hw_) == 1 or hw_[0] == hw_[1] else tuple(hw_)


def hw(size) -> Tuple[int, int]:
    """(H, W) of a size from :func:`parse_size`."""
    return (size, size) if isinstance(size, int) else tuple(size)


def size_label(size) -> str:
    h, w = hw(size)
    return str(h) if h == w else f'{h}x{w}'


def split_impl(impl: str) -> Tuple[str, str]:
    """``'mmcvt@fp32'`` -> ``('mmcvt', 'fp32')``: an impl pinned to a dtype
    (to compare dtypes in one run); ``'mmcvt'`` -> ``('mmcvt', '')``, the
    run's ``--dtype``."""
    base, _, dtype = impl.partition('@')
    return base, dtype


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
    from mmcvt.models.layers import QuickGELU
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
        from mmcvt.models import CvT
        a = ARCHS[arch]
        n = len(a['depth'])
        self.backbone = CvT(
            arch=_mm_arch(arch),
            out_indices=(n - 1, ),
            out_type='cls_token',
            drop_path_rate=[0.] * n,
            **kwargs)
        self.head = nn.Module()
        self.head.fc = nn.Linear(a['embed_dim'][-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.fc(self.backbone(x)[-1])


class MMCvTBackbone(nn.Module):
    """``mmcvt.CvT`` as a dense backbone: every stage's map, NCHW (the class
    token stays in the last stage's attention, as in the det / seg
    configs)."""

    def __init__(self, arch: str):
        super().__init__()
        from mmcvt.models import CvT
        n = len(ARCHS[arch]['depth'])
        self.backbone = CvT(
            arch=_mm_arch(arch),
            out_indices=tuple(range(n)),
            out_type='featmap',
            drop_path_rate=[0.] * n)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return self.backbone(x)


def _mm_arch(arch: str):
    """An arch in mmcvt terms: a name of ``CvT.arch_zoo`` or a dict."""
    from mmcvt.models import CvT
    a = ARCHS[arch]
    return arch if arch in CvT.arch_zoo else dict(
        embed_dims=list(a['embed_dim']),
        num_heads=list(a['num_heads']),
        depths=list(a['depth']),
        drop_path_rates=[0.] * len(a['depth']))


class HFBackbone(nn.Module):
    """transformers ``CvtModel``: every stage's map, NCHW."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return self.model(pixel_values=x, output_hidden_states=True,
                          return_dict=True).hidden_states


def build_mmcvt_backbone(arch: str, hf_state_dict: dict) -> MMCvTBackbone:
    """mmcvt dense backbone loaded with converted HF weights (all but the
    classifier's head and final norm, which it does not build)."""
    from mmcvt.models.utils import convert_hf_to_mmcvt, strip_backbone
    model = MMCvTBackbone(arch)
    state = strip_backbone(convert_hf_to_mmcvt(hf_state_dict))
    model.backbone.load_state_dict(
        {k: v for k, v in state.items() if not k.startswith('norm.')},
        strict=True)
    return model.eval()


def build_mmcvt(arch: str, hf_state_dict: dict,
                num_classes: int = NUM_CLASSES) -> MMCvTClassifier:
    """mmcvt classifier loaded (strictly) with converted HF weights."""
    from mmcvt.models.utils import convert_hf_to_mmcvt
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


class Weights:
    """The reference weights of one arch, shared by every implementation."""

    def __init__(self, arch: str, seed: int):
        self.arch = arch
        self.hf = build_hf(arch, seed)
        self.hf_state_dict = {
            k: v.detach().clone()
            for k, v in self.hf.state_dict().items()
        }
        self.hf_config = self.hf.config


def build_impl(impl: str, ctx: Weights, size, device: torch.device,
               extras: Dict[str, Callable],
               task: str = 'cls') -> Tuple[nn.Module, nn.Module]:
    """(module to run, eager module for MAC counting), on ``device``.
    ``task='dense'``: the backbones alone, returning every stage's map;
    ``impl@dtype`` builds ``impl``."""
    impl = split_impl(impl)[0]
    if impl == 'hf':
        hf = copy.deepcopy(ctx.hf)
        model = (HFBackbone(hf.cvt) if task == 'dense' else
                 HFClassifier(hf)).to(device)
        return model, model
    if impl.startswith('mmcvt') and impl in BUILTIN_IMPLS:
        model = (build_mmcvt_backbone(ctx.arch, ctx.hf_state_dict)
                 if task == 'dense' else build_mmcvt(
                     ctx.arch, ctx.hf_state_dict)).to(device)
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
    if isinstance(out, (list, tuple)) and len(out) > 1 and all(
            isinstance(t, torch.Tensor) for t in out):
        # dense: every stage's map takes part
        return sum(t.float().mean() for t in out)
    logits = first_tensor(out)
    if logits.dim() == 2 and logits.shape == (labels.shape[0], NUM_CLASSES):
        return F.cross_entropy(logits.float(), labels)
    return logits.float().mean()


def check_parity(impls: List[str], ctx: Weights, device: torch.device,
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
    for impl in dict.fromkeys(split_impl(i)[0] for i in impls):
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
