"""``type='mmcvt.CvT'`` builds from the mmpretrain, mmdet and mmseg registries
(mmengine resolves the ``mmcvt`` scope through ``mmcvt.registry``)."""
import importlib

import pytest
import torch

from mmcvt.models import CvT


@pytest.mark.parametrize('toolkit', ['mmpretrain', 'mmdet', 'mmseg'])
def test_build_from_toolkit_scope(tiny_arch, toolkit):
    try:
        importlib.import_module(f'{toolkit}.models')
        registry = importlib.import_module(f'{toolkit}.registry')
    except ModuleNotFoundError as e:  # not installed (yet) in this env
        if e.name.split('.')[0] not in (toolkit, 'mmcv'):
            raise
        pytest.skip(f'{toolkit} not installed: {e}')
    model = registry.MODELS.build(
        dict(
            type='mmcvt.CvT',
            arch=tiny_arch,
            out_indices=(0, 1, 2),
            out_type='featmap'))
    assert isinstance(model, CvT)
    outs = model(torch.zeros(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [16, 32, 48]
    # a zoo arch by name, as configs use it
    with torch.device('meta'):
        model = registry.MODELS.build(dict(type='mmcvt.CvT', arch='13'))
    assert model.depths == [1, 2, 10]
