"""Every classification config loads, builds its model, pipelines and
optimizer, and states the recipe it claims (batch / lr bookkeeping, no weight
decay on norms, biases, class token and position embeddings).

Covered: every config under ``configs/{cvt,cvt_transfer,cvt_ablation,demo}``
plus any other config whose ``default_scope`` is ``'mmpretrain'`` (det / seg
configs of other families are left to their own tests). The big W24 models
(277M parameters) are built on the ``meta`` device: no memory, no init cost.
"""
import contextlib
import copy
import functools
import glob
import os
import os.path as osp

import pytest
import torch
import yaml
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmcvt  # noqa: F401  (compatibility fixes, registers mmcvt.CvT)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(ROOT, 'configs')
FAMILIES = ('cvt', 'cvt_transfer', 'cvt_ablation', 'demo')
# the GPU count of the official runs the batch / lr bookkeeping refers to
GPUS = 8


@functools.lru_cache(maxsize=None)
def _load_cached(path):
    return Config.fromfile(path)


def _load(path):
    """Config.fromfile, parsed once per file (resolving ``mmpretrain::``
    bases is slow); callers get their own copy."""
    return copy.deepcopy(_load_cached(path))


def _rel(path):
    return osp.relpath(path, CONFIG_DIR)


def _is_base(path):
    return '_base_' in _rel(path).split(os.sep)


def _collect():
    files = sorted(
        f for f in glob.glob(osp.join(CONFIG_DIR, '**', '*.py'),
                             recursive=True) if not _is_base(f))
    # the dense demos of configs/demo are mmdet / mmseg configs
    ours = [
        f for f in files if _rel(f).split(os.sep)[0] in FAMILIES
        and 'digit-scenes' not in osp.basename(f)
    ]
    others, broken = [], {}
    for f in files:
        if f in ours:
            continue
        try:  # other families' configs: only the classification ones
            if _load(f).get('default_scope') == 'mmpretrain':
                others.append(f)
        except Exception as e:  # reported by test_every_config_loads
            broken[_rel(f)] = f'{type(e).__name__}: {e}'
    return ours + others, broken


CONFIGS, BROKEN = _collect()
IDS = [_rel(f) for f in CONFIGS]


def test_every_config_loads():
    """No config is left out of these tests because it fails to load."""
    assert BROKEN == {}


def test_families_present():
    names = set(IDS)
    for required in ('cvt/cvt-13_imagenet.py', 'cvt/cvt-21_imagenet.py',
                     'cvt/cvt-w24_imagenet.py', 'cvt/cvt-13_imagenet-384px.py',
                     'cvt/cvt-21_in21k.py',
                     'cvt/cvt-w24_in21k-pre_in1k-384px.py',
                     'cvt_transfer/cvt-21_in21k-pre_cifar100-384px.py',
                     'cvt_ablation/cvt-13_kv-stride1_imagenet.py',
                     'demo/cvt-tiny_digits.py'):
        assert required in names, required
    for family in FAMILIES:
        assert any(n.startswith(family + os.sep) for n in names), family


def _big(cfg):
    arch = cfg.model.backbone.get('arch')
    return isinstance(arch, str) and 'w24' in arch


def _build_model(cfg):
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    ctx = torch.device('meta') if _big(cfg) else contextlib.nullcontext()
    with ctx:
        return MODELS.build(cfg.model)


def _head_classes(cfg):
    return cfg.model.head.num_classes


@pytest.mark.parametrize('cfg_file', CONFIGS, ids=IDS)
def test_config_builds(cfg_file):
    from mmpretrain.registry import TRANSFORMS
    cfg = _load(cfg_file)
    assert cfg.get('default_scope') == 'mmpretrain'
    model = _build_model(cfg)
    # the head reads the backbone's output width
    assert model.head.fc.in_features == model.backbone.embed_dims[-1]
    if cfg.get('data_preprocessor', {}).get('num_classes') is not None:
        assert cfg.data_preprocessor.num_classes == _head_classes(cfg)
    # every transform of every pipeline builds
    init_default_scope('mmpretrain')
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(name)
        if loader is None:
            continue
        for t in loader.dataset.pipeline:
            TRANSFORMS.build(t)


def _is_ours(cfg_file):
    return _rel(cfg_file).split(os.sep)[0] in FAMILIES


OURS = [f for f in CONFIGS if _is_ours(f)]
OUR_IDS = [_rel(f) for f in OURS]


@pytest.mark.parametrize('cfg_file', OURS, ids=OUR_IDS)
def test_recipe_bookkeeping(cfg_file):
    """lr and total batch are consistent with ``auto_scale_lr``, warm-up
    starts where it says, iteration-based loops checkpoint by iteration."""
    cfg = _load(cfg_file)
    name = osp.basename(cfg_file)
    base_bs = cfg.auto_scale_lr.base_batch_size
    gpus = 1 if _rel(cfg_file).startswith('demo') else GPUS
    assert cfg.train_dataloader.batch_size * gpus == base_bs
    opt = cfg.optim_wrapper.optimizer
    if opt.type == 'AdamW':  # ImageNet(-22k) pre-training and ablations
        per_gpu_lr = {2048: 2.5e-4, 1024: 1.25e-4}
        if not name.startswith('cvt-tiny'):
            assert opt.lr == pytest.approx(per_gpu_lr[base_bs] * GPUS)
            expected_wd = 0.05 if name.startswith('cvt-13') else 0.1
            assert opt.weight_decay == expected_wd
            warmup, cosine = cfg.param_scheduler
            assert warmup.start_factor * opt.lr == pytest.approx(1e-6)
            assert warmup.end == 5 and cosine.end == 300
            assert cosine.eta_min == pytest.approx(1e-5)
            assert cfg.train_cfg.max_epochs == 300
            # the official code normalises each GPU's batch on its own
            assert 'sync_bn' not in cfg
    else:  # fine-tuning: SGD, batch 512, iteration based
        assert opt.type == 'SGD' and opt.momentum == 0.9
        assert base_bs == 512
        assert cfg.train_cfg.type == 'IterBasedTrainLoop'
        expected_iters = (20000 if '_in1k' in name else
                          10000 if 'cifar' in name else 500)
        assert cfg.train_cfg.max_iters == expected_iters
        assert cfg.param_scheduler[-1].end == expected_iters
        assert cfg.default_hooks.checkpoint.by_epoch is False
        assert cfg.model.train_cfg is None  # no Mixup / CutMix
        assert cfg.model.backbone.init_cfg.type == 'Pretrained'
        assert 'sync_bn' not in cfg
    if '384px' in name:
        assert cfg.model.backbone.img_size == 384
        sizes = [
            t.get('scale') for t in cfg.val_dataloader.dataset.pipeline
            if t.type == 'Resize'
        ]
        assert sizes == [(384, 384)]  # plain resize, no centre crop


NO_DECAY_CONFIGS = [
    'cvt/cvt-13_imagenet.py', 'cvt/cvt-w24_in21k.py',
    'cvt_ablation/cvt-13_pos-embed-all_imagenet.py', 'demo/cvt-tiny_digits.py'
]


@pytest.mark.parametrize('rel', NO_DECAY_CONFIGS)
def test_no_weight_decay_groups(rel):
    """Norms (LN and the projections' BN), biases, class tokens and position
    embeddings get no weight decay; all other weights do."""
    from mmengine.optim import build_optim_wrapper
    cfg = _load(osp.join(CONFIG_DIR, rel))
    model = _build_model(cfg)
    init_default_scope('mmpretrain')
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    wd = cfg.optim_wrapper.optimizer.weight_decay
    by_param = {}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            by_param[id(p)] = group['weight_decay']
    norm_types = (torch.nn.LayerNorm, torch.nn.modules.batchnorm._BatchNorm)
    norm_params = {
        id(p)
        for m in model.modules() if isinstance(m, norm_types)
        for p in m.parameters(recurse=False)
    }
    seen = dict(token=0, pos=0, bn=0, decayed=0)
    for name, p in model.named_parameters():
        no_decay = (
            id(p) in norm_params or name.endswith('.bias')
            or name.endswith('.cls_token') or name.endswith('.pos_embed'))
        assert by_param[id(p)] == (0. if no_decay else wd), name
        seen['token'] += name.endswith('.cls_token')
        seen['pos'] += name.endswith('.pos_embed')
        seen['bn'] += '.bn.' in name
        seen['decayed'] += not no_decay
    assert seen['token'] == 1 and seen['bn'] > 0 and seen['decayed'] > 0
    if 'pos-embed' in rel:
        assert seen['pos'] == 3


@pytest.mark.parametrize(
    'rel,params_m',
    [('cvt/cvt-13_imagenet.py', 20.0), ('cvt/cvt-21_imagenet.py', 31.6),
     ('cvt/cvt-w24_in21k-pre_in1k-384px.py', 277.2)])
def test_paper_model_sizes(rel, params_m):
    """Parameter counts of the configured classifiers match the paper
    (20M / 32M / 277M, Table 2) within 1%."""
    model = _build_model(_load(osp.join(CONFIG_DIR, rel)))
    n = sum(p.numel() for p in model.parameters()) / 1e6
    assert n == pytest.approx(params_m, rel=0.01)


def _metafiles():
    with open(osp.join(ROOT, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    return index['Import']


def test_model_index_and_metafiles():
    """model-index.yml imports one metafile per family; every metafile entry
    points at an existing config, every family config has an entry, and the
    official weight names are recorded."""
    imported = _metafiles()
    configs_in_meta = set()
    weights = set()
    for meta in imported:
        assert osp.isfile(osp.join(ROOT, meta)), meta
        with open(osp.join(ROOT, meta)) as f:
            data = yaml.safe_load(f)
        collections = {c['Name'] for c in data['Collections']}
        for c in data['Collections']:
            assert osp.isfile(osp.join(ROOT, c['README']))
        for m in data['Models']:
            assert m['In Collection'] in collections
            assert osp.isfile(osp.join(ROOT, m['Config'])), m['Config']
            configs_in_meta.add(m['Config'])
            if m.get('Weights'):
                weights.add(m['Weights'])
                # the official file it is the same as
                weights.add(m['Converted From']['Weights'].split()[0])
            for r in m.get('Results') or []:
                assert 0 < r['Metrics']['Top 1 Accuracy'] <= 100
    for f in OURS:
        assert osp.relpath(f, ROOT) in configs_in_meta, f
    for w in ('CvT-13-224x224-IN-1k.pth', 'CvT-21-224x224-IN-1k.pth',
              'CvT-13-384x384-IN-1k.pth', 'CvT-21-384x384-IN-1k.pth',
              'CvT-13-384x384-IN-22k.pth', 'CvT-21-384x384-IN-22k.pth',
              'CvT-w24-384x384-IN-22k.pth', 'hf://microsoft/cvt-13',
              'hf://microsoft/cvt-13-384', 'hf://microsoft/cvt-13-384-22k',
              'hf://microsoft/cvt-21', 'hf://microsoft/cvt-21-384',
              'hf://microsoft/cvt-21-384-22k',
              'hf://microsoft/cvt-w24-384-22k'):
        assert w in weights, w


def _train_transforms(cfg):
    return [t.type for t in cfg.train_dataloader.dataset.pipeline]


def test_cvt21_224_follows_its_yaml():
    """cvt-21-224x224.yaml trains without timm's loader (USE_LOADER false):
    bilinear RandomResizedCrop + flip only, with the repeated-augmentation
    sampler; Mixup / CutMix and label smoothing stay."""
    from mmengine.registry import DATA_SAMPLERS
    cfg = _load(osp.join(CONFIG_DIR, 'cvt/cvt-21_imagenet.py'))
    assert _train_transforms(cfg) == [
        'LoadImageFromFile', 'RandomResizedCrop', 'RandomFlip', 'PackInputs'
    ]
    rrc = cfg.train_dataloader.dataset.pipeline[1]
    assert rrc.scale == 224 and rrc.interpolation == 'bilinear'
    assert tuple(rrc.crop_ratio_range) == (0.08, 1.0)
    assert cfg.train_dataloader.sampler == dict(
        type='RepeatAugSampler', shuffle=True)
    init_default_scope('mmpretrain')
    sampler = DATA_SAMPLERS.build(
        dict(cfg.train_dataloader.sampler, dataset=list(range(12))))
    # one process: an epoch's worth of indices, each image three times in a
    # row (across GPUs, each repeat goes to another one)
    idx = list(sampler)
    assert sampler.num_repeats == 3 and len(idx) == 12
    assert all(idx[i] == idx[i + 1] == idx[i + 2] for i in range(0, 12, 3))
    assert len(set(idx)) == 4
    assert {t.type for t in cfg.model.train_cfg.augments} == {
        'Mixup', 'CutMix'
    }
    assert cfg.model.head.loss.type == 'LabelSmoothLoss'


@pytest.mark.parametrize('rel', [
    'cvt/cvt-13_imagenet.py', 'cvt/cvt-13_imagenet-384px.py',
    'cvt/cvt-21_imagenet-384px.py', 'cvt/cvt-w24_imagenet-384px.py',
    'cvt/cvt-21_in21k.py'
])
def test_timm_loader_recipes(rel):
    """The other yamls train through timm's loader: RandAugment and random
    erasing, default sampler."""
    cfg = _load(osp.join(CONFIG_DIR, rel))
    types = _train_transforms(cfg)
    assert 'RandAugment' in types and 'RandomErasing' in types
    rrc = cfg.train_dataloader.dataset.pipeline[1]
    assert rrc.type == 'RandomResizedCrop'
    assert rrc.interpolation == 'bicubic'
    assert rrc.scale == (384 if '384px' in rel else 224)
    assert cfg.train_dataloader.sampler.type == 'DefaultSampler'


def _params_m(cfg):
    model = _build_model(cfg)
    return sum(p.numel() for p in model.parameters()) / 1e6


def _backbone_gmacs(cfg, size=224):
    from torch.utils.flop_counter import FlopCounterMode
    model = _build_model(cfg).backbone.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 2 / 1e9


# (config, params (M) in the paper's Tables 6 / 7)
ABLATION_PARAMS = [
    ('cvt_ablation/cvt-13_patch-embed_imagenet.py', 19.5),  # Table 6 (a)
    ('cvt_ablation/cvt-13_patch-embed-pos-embed_imagenet.py', 19.9),  # (b)
    ('cvt_ablation/cvt-13_pos-embed-all_imagenet.py', 20.3),  # (c)
    ('cvt/cvt-13_imagenet.py', 20.0),  # (d)
    ('cvt_ablation/cvt-13_kv-stride1_imagenet.py', 20.0),  # Table 7
]


@pytest.mark.parametrize('rel,paper_m', ABLATION_PARAMS)
def test_ablation_params_match_paper(rel, paper_m):
    """Each ablation config builds the model of its table row: parameter
    count (with the 1000-class head) within 0.1M of the paper, except Table
    6 (c), which the paper states as 20.3M although its position embeddings
    (0.43M at 224) on top of CvT-13 (20.0M) give 20.4M: within 0.15M."""
    tol = 0.15 if 'pos-embed-all' in rel else 0.1
    assert abs(_params_m(_load(osp.join(CONFIG_DIR, rel))) - paper_m) <= tol


def test_ablation_kv_stride_flops_ratio():
    """Table 7: stride 1 for keys and values costs 6.55 GFLOPs against 4.53
    for stride 2 (the paper's FLOPs are multiply-adds)."""
    stride1 = _backbone_gmacs(
        _load(osp.join(CONFIG_DIR,
                       'cvt_ablation/cvt-13_kv-stride1_imagenet.py')))
    stride2 = _backbone_gmacs(_load(osp.join(CONFIG_DIR,
                                             'cvt/cvt-13_imagenet.py')))
    assert stride1 / stride2 == pytest.approx(6.55 / 4.53, rel=0.02)
    assert stride1 == pytest.approx(6.55, rel=0.02)


def test_ablation_metafile_matches_paper():
    """The metafile records each ablation row's published parameters and
    top-1 (Tables 5-8)."""
    with open(osp.join(CONFIG_DIR, 'cvt_ablation', 'metafile.yml')) as f:
        models = {m['Name']: m for m in yaml.safe_load(f)['Models']}
    expected = {
        'cvt-13_patch-embed_imagenet': (19.5, 80.7),
        'cvt-13_patch-embed-pos-embed_imagenet': (19.9, 81.1),
        'cvt-13_pos-embed-all_imagenet': (20.0, 81.5),
        'cvt-13_pos-embed-first_imagenet': (20.0, 81.4),
        'cvt-13_pos-embed-last_imagenet': (20.0, 81.4),
        'cvt-13_kv-stride1_imagenet': (20.0, 82.3),
        'cvt-13_linear-proj_imagenet': (20.0, 80.6),
        'cvt-13_conv-proj-stage1_imagenet': (20.0, 80.8),
        'cvt-13_conv-proj-stage12_imagenet': (20.0, 81.0),
    }
    for name, (params_m, top1) in expected.items():
        meta = models[name]
        assert meta['Metadata']['Parameters'] == params_m * 1e6, name
        acc = meta['Results'][0]['Metrics']['Top 1 Accuracy']
        assert acc == top1, name


def test_layer_wise_lr_decay_groups():
    """CvT.get_layer_depth drives mmpretrain's layer-decay constructor: the
    head at the base lr, every block one depth below the next across the
    three stages, the first embedding lowest; the no-decay rules hold
    alongside (checked with a non-zero weight decay)."""
    from mmengine.optim import build_optim_wrapper
    cfg = _load(
        osp.join(CONFIG_DIR, 'cvt_transfer',
                 'cvt-13_in21k-pre_cifar10-384px_layer-decay.py'))
    cfg.optim_wrapper.optimizer.weight_decay = wd = 0.05
    model = _build_model(cfg)
    init_default_scope('mmpretrain')
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    groups = {g['param_name']: g for g in wrapper.optimizer.param_groups}
    assert set(groups) == {
        n for n, p in model.named_parameters() if p.requires_grad}
    lr, rate, top = cfg.optim_wrapper.optimizer.lr, 0.75, 1 + 2 + 10 + 1

    def depth(name):
        return groups[name]['layer_id']

    assert depth('head.fc.weight') == depth('backbone.norm.weight') == top
    assert groups['head.fc.weight']['lr'] == pytest.approx(lr)
    blocks = [f'backbone.stages.{i}.blocks.{j}.mlp.fc1.weight'
              for i, n in enumerate((1, 2, 10)) for j in range(n)]
    assert [depth(b) for b in blocks] == list(range(1, 14))
    assert depth('backbone.stages.0.patch_embed.proj.weight') == 0
    assert depth('backbone.stages.1.patch_embed.proj.weight') == 1
    assert depth('backbone.stages.2.cls_token') == 3
    for name, g in groups.items():
        assert g['lr'] == pytest.approx(lr * rate**(top - g['layer_id']))
        no_decay = (name.endswith('.bias') or name.endswith('.cls_token')
                    or '.norm' in name or '.bn.' in name)
        assert g['weight_decay'] == (0. if no_decay else wd), name
