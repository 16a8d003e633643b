"""Load a script under tools/ as a module, to call its ``main(argv)``."""
import importlib.util
import os.path as osp

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load_tool(*path: str):
    """``load_tool('analysis', 'get_flops.py')``: tools/analysis/get_flops.py
    as a module."""
    script = osp.join(ROOT, 'tools', *path)
    name = osp.splitext(path[-1])[0]
    spec = importlib.util.spec_from_file_location(f'tool_{name}', script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
