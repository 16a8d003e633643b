# Copyright (c) mmcvt contributors. All rights reserved.
"""mmcvt's CvT at another git revision, as ``--impl-extra`` builders: a
refactor is shown to cost no speed or memory by timing both in one run.

    MMCVT_BENCH_REV=<rev> python tools/analysis/benchmark.py \\
        --impls mmcvt before --reference before \\
        --impl-extra before=mmcvt.utils.benchmark.revision:classifier ...
    # with --task dense: before=mmcvt.utils.benchmark.revision:backbone

The revision's ``mmcvt/models`` and ``mmcvt/registry.py`` are extracted with
``git archive`` into a temporary package ``mmcvt_rev`` (its registry under
the scope ``mmcvt_rev``), and its ``CvT`` gets the working tree's benchmark
wrappers and converted weights, so that the two differ in the model code
alone. ``MMCVT_BENCH_REV`` defaults to ``HEAD`` (the last commit, against
uncommitted changes).
"""
import functools
import importlib
import io
import os
import os.path as osp
import subprocess
import sys
import tarfile
import tempfile

import torch.nn as nn

from . import impls

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))
PACKAGE = 'mmcvt_rev'


def _rewrite(text: str) -> str:
    """The revision's own modules under the package ``mmcvt_rev``."""
    for old, new in (('from mmcvt.', f'from {PACKAGE}.'),
                     ('from mmcvt import', f'from {PACKAGE} import'),
                     ("scope='mmcvt'", f"scope='{PACKAGE}'"),
                     ("'mmcvt.models'", f"'{PACKAGE}.models'")):
        text = text.replace(old, new)
    return text


@functools.lru_cache(maxsize=None)
def revision_cvt(rev: str) -> type:
    """The ``CvT`` class of mmcvt at git revision ``rev``."""
    result = subprocess.run(
        ['git', '-C', ROOT, 'archive', '--format=tar', rev, 'mmcvt/models',
         'mmcvt/registry.py'], capture_output=True)
    if result.returncode != 0:
        raise ValueError(
            f'MMCVT_BENCH_REV={rev}: git archive failed in {ROOT} '
            f'({result.stderr.decode().strip()}). Name a commit of this '
            'repository (a hash, HEAD~1, a tag).')
    dst = tempfile.mkdtemp(prefix='mmcvt_rev_')
    with tarfile.open(fileobj=io.BytesIO(result.stdout)) as tar:
        tar.extractall(dst, filter='data')
    package = osp.join(dst, PACKAGE)
    os.rename(osp.join(dst, 'mmcvt'), package)
    for folder, _, files in os.walk(package):
        for name in files:
            if name.endswith('.py'):
                path = osp.join(folder, name)
                with open(path) as f:
                    text = _rewrite(f.read())
                with open(path, 'w') as f:
                    f.write(text)
    with open(osp.join(package, '__init__.py'), 'w') as f:
        f.write(f'"""mmcvt models at {rev} (benchmark)."""\n')
    sys.path.insert(0, dst)
    return importlib.import_module(
        f'{PACKAGE}.models.backbones.cvt').CvT


def _cvt(arch: str, **kwargs) -> nn.Module:
    rev = os.environ.get('MMCVT_BENCH_REV', 'HEAD')
    n = len(impls.ARCHS[arch]['depth'])
    return revision_cvt(rev)(
        arch=impls._mm_arch(arch), drop_path_rate=[0.] * n, **kwargs)


def classifier(arch: str, hf_state_dict: dict) -> nn.Module:
    """The revision's CvT in the benchmark's classifier (``--task cls``)."""
    from mmcvt.models.utils import convert_hf_to_mmcvt
    n = len(impls.ARCHS[arch]['depth'])
    model = impls.MMCvTClassifier(arch)
    model.backbone = _cvt(arch, out_indices=(n - 1, ), out_type='cls_token')
    model.load_state_dict(convert_hf_to_mmcvt(hf_state_dict), strict=True)
    return model.eval()


def backbone(arch: str, hf_state_dict: dict) -> nn.Module:
    """The revision's CvT as the benchmark's dense backbone (``--task
    dense``)."""
    from mmcvt.models.utils import convert_hf_to_mmcvt, strip_backbone
    n = len(impls.ARCHS[arch]['depth'])
    model = impls.MMCvTBackbone(arch)
    model.backbone = _cvt(arch, out_indices=tuple(range(n)),
                          out_type='featmap')
    state = strip_backbone(convert_hf_to_mmcvt(hf_state_dict))
    model.backbone.load_state_dict(
        {k: v for k, v in state.items() if not k.startswith('norm.')},
        strict=True)
    return model.eval()
