"""mmcvt: CvT backbones for OpenMMLab (mmpretrain, mmdet, mmseg)."""
from . import checkpoint, compat, model_zoo
from .version import __version__, version_info

compat.apply()
# local .safetensors files and hf://owner/repo checkpoints, everywhere
checkpoint.register_schemes()
# mmpretrain.get_model('cvt-13_in1k', pretrained=True) and friends
model_zoo.register_when_imported()

__all__ = ['__version__', 'version_info']
