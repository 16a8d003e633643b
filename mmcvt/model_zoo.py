# Copyright (c) mmcvt contributors. All rights reserved.
"""mmcvt's published models by name in mmpretrain: ``get_model``,
``inference_model``, ``ImageClassificationInferencer`` and
``FeatureExtractor`` take the names of ``model-index.yml`` once
``mmcvt`` is imported.

mmpretrain's ``ModelHub`` accepts extra model indexes
(``ModelHub.register_model_index``). ``import mmcvt`` must stay light (it
does not import mmpretrain), so the index is registered when
``mmpretrain.apis.model`` is imported, or at once if it already is.
"""
import importlib.abc
import importlib.util
import os.path as osp
import sys
import warnings
from typing import Callable, Optional, Tuple

__all__ = ['model_index', 'register_model_index']

_HUB_MODULE = 'mmpretrain.apis.model'
_REGISTERED = False


def model_index() -> Tuple[str, str]:
    """``(model-index.yml, folder its config paths are relative to)``: the
    copy packaged under ``mmcvt/.mim``, else the repository's."""
    package = osp.dirname(osp.abspath(__file__))
    for root in (osp.join(package, '.mim'), osp.dirname(package)):
        path = osp.join(root, 'model-index.yml')
        if osp.isfile(path):
            return path, root
    raise FileNotFoundError(
        f'model-index.yml is neither in {package}/.mim nor next to the '
        'package; reinstall mmcvt (pip install -e .).')


def register_model_index(module=None) -> None:
    """Register mmcvt's models with mmpretrain's ``ModelHub`` (once)."""
    global _REGISTERED
    if _REGISTERED:
        return
    hub = (module or sys.modules[_HUB_MODULE]).ModelHub
    path, root = model_index()
    hub.register_model_index(path, config_prefix=root)
    _REGISTERED = True


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs ``callback(module)`` right after the module ``name`` is
    executed, the first time it is imported."""

    def __init__(self, name: str, callback: Callable):
        self.name, self.callback = name, callback

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # once; and not for the lookup below
        spec: Optional[importlib.machinery.ModuleSpec] = \
            importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        exec_module, callback = spec.loader.exec_module, self.callback

        def exec_then_callback(module):
            exec_module(module)
            callback(module)

        spec.loader.exec_module = exec_then_callback
        return spec


def _register_or_warn(module=None) -> None:
    # runs inside the import of mmpretrain: never break that import
    try:
        register_model_index(module)
    except Exception as e:  # noqa: BLE001
        warnings.warn(f'mmcvt: its models are not available by name in '
                      f'mmpretrain ({type(e).__name__}: {e}).')


def when_imported(name: str, callback: Callable) -> None:
    """``callback(module)`` now if the module ``name`` is loaded, else right
    after its first import."""
    if name in sys.modules:
        callback(sys.modules[name])
    elif not any(isinstance(f, _AfterImport) and f.name == name
                 for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(name, callback))


def register_when_imported() -> None:
    """Register the model index now if mmpretrain's ``ModelHub`` is loaded,
    else as soon as it is."""
    when_imported(_HUB_MODULE, _register_or_warn)
