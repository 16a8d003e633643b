"""Write ``official_cvt-13_keys.json``: the ``state_dict()`` keys and shapes
of the official CvT-13 (microsoft/CvT ``lib/models/cls_cvt.py``, built with
the spec of ``experiments/imagenet/cvt/cvt-13-224x224.yaml``, 1000 classes).

The tests convert a checkpoint with exactly these keys, so the converter is
checked against the official layout rather than against mmcvt's own names.
Run once with a checkout of the official repository::

    python tests/data/make_official_keys.py /path/to/CvT/lib/models/cls_cvt.py

The official file imports timm, einops, scipy and ``torch._six`` (gone from recent
torch); only parameter names and shapes are needed, so those imports are
replaced by stand-ins that create no parameters.
"""
import collections.abc
import json
import os.path as osp
import sys
import types

import torch.nn as nn


def _stub_modules() -> None:
    six = types.ModuleType('torch._six')
    six.container_abcs = collections.abc
    sys.modules['torch._six'] = six

    class DropPath(nn.Module):

        def __init__(self, drop_prob=0.):
            super().__init__()

    layers = types.ModuleType('timm.models.layers')
    layers.DropPath = DropPath
    layers.trunc_normal_ = nn.init.trunc_normal_
    for name in ('timm', 'timm.models'):
        sys.modules[name] = types.ModuleType(name)
    sys.modules['timm.models.layers'] = layers

    class Rearrange(nn.Module):

        def __init__(self, *args, **kwargs):
            super().__init__()

    einops = types.ModuleType('einops')
    einops.rearrange = None
    einops_layers = types.ModuleType('einops.layers.torch')
    einops_layers.Rearrange = Rearrange
    sys.modules['einops'] = einops
    sys.modules['einops.layers'] = types.ModuleType('einops.layers')
    sys.modules['einops.layers.torch'] = einops_layers
    # used only to resize position embeddings of a loaded checkpoint
    sys.modules.setdefault('scipy', types.ModuleType('scipy'))


class _Spec(dict):
    __getattr__ = dict.__getitem__


CVT13 = _Spec(
    INIT='trunc_norm',
    NUM_STAGES=3,
    PATCH_SIZE=[7, 3, 3],
    PATCH_STRIDE=[4, 2, 2],
    PATCH_PADDING=[2, 1, 1],
    DIM_EMBED=[64, 192, 384],
    NUM_HEADS=[1, 3, 6],
    DEPTH=[1, 2, 10],
    MLP_RATIO=[4.0, 4.0, 4.0],
    ATTN_DROP_RATE=[0.0, 0.0, 0.0],
    DROP_RATE=[0.0, 0.0, 0.0],
    DROP_PATH_RATE=[0.0, 0.0, 0.1],
    QKV_BIAS=[True, True, True],
    CLS_TOKEN=[False, False, True],
    POS_EMBED=[False, False, False],
    QKV_PROJ_METHOD=['dw_bn', 'dw_bn', 'dw_bn'],
    KERNEL_QKV=[3, 3, 3],
    PADDING_KV=[1, 1, 1],
    STRIDE_KV=[2, 2, 2],
    PADDING_Q=[1, 1, 1],
    STRIDE_Q=[1, 1, 1])


def main(path: str) -> None:
    _stub_modules()
    source = open(path).read().replace(
        'from .registry import register_model',
        'register_model = lambda fn: fn')
    namespace = {'__name__': 'cls_cvt'}
    exec(compile(source, path, 'exec'), namespace)
    from functools import partial
    model = namespace['ConvolutionalVisionTransformer'](
        in_chans=3,
        num_classes=1000,
        act_layer=namespace['QuickGELU'],
        norm_layer=partial(namespace['LayerNorm'], eps=1e-5),
        init='trunc_norm',
        spec=CVT13)
    keys = {k: list(v.shape) for k, v in model.state_dict().items()}
    out = osp.join(osp.dirname(osp.abspath(__file__)),
                   'official_cvt-13_keys.json')
    with open(out, 'w') as f:  # one key a line
        f.write('{\n' + ',\n'.join(f'{json.dumps(k)}: {json.dumps(v)}'
                                    for k, v in keys.items()) + '\n}\n')
    print(f'{len(keys)} keys, '
          f'{sum(v.numel() for v in model.parameters()):,} parameters -> '
          f'{out}')


if __name__ == '__main__':
    main(sys.argv[1])
