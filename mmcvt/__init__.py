"""mmcvt: CvT backbones for OpenMMLab (mmpretrain, mmdet, mmseg)."""
from . import compat
from .version import __version__, version_info

compat.apply()

__all__ = ['__version__', 'version_info']
