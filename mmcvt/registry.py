"""mmcvt's registries.

``MODELS`` is a child of mmengine's root model registry under the scope
``mmcvt``. mmengine resolves ``type='mmcvt.CvT'`` from any toolkit scope
(mmpretrain, mmdet, mmseg) by importing this module and then
``mmcvt.models`` (``locations``), so configs need no ``custom_imports``.
"""
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry(
    'model', parent=MMENGINE_MODELS, scope='mmcvt', locations=['mmcvt.models'])

__all__ = ['MODELS']
