"""The three OpenMMLab toolkits import and build models from their own
configs."""
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmcvt  # noqa: F401


def test_toolkit_models_import():
    import mmdet.models  # noqa: F401
    import mmpretrain.models  # noqa: F401
    import mmseg.models  # noqa: F401


@pytest.mark.parametrize('cfg_path,scope,cls_name', [
    ('mmpretrain::resnet/resnet18_8xb32_in1k.py', 'mmpretrain',
     'ImageClassifier'),
    ('mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', 'mmdet', 'MaskRCNN'),
    ('mmseg::pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py', 'mmseg',
     'EncoderDecoder'),
])
def test_build_shipped_config(tmp_path, cfg_path, scope, cls_name):
    # inherit the shipped config through its `pkg::` name
    cfg_file = tmp_path / 'cfg.py'
    cfg_file.write_text(f'_base_ = [{cfg_path!r}]\n')
    cfg = Config.fromfile(str(cfg_file))
    assert cfg.default_scope == scope
    init_default_scope(scope)
    registry = {
        'mmpretrain': 'mmpretrain.registry',
        'mmdet': 'mmdet.registry',
        'mmseg': 'mmseg.registry'
    }[scope]
    models = __import__(registry, fromlist=['MODELS']).MODELS
    model = models.build(cfg.model)
    assert type(model).__name__ == cls_name
    assert sum(p.numel() for p in model.parameters()) > 1e6
