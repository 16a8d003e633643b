import os.path as osp
import sys

import pytest
import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Train in-process with one intra-op thread: on a shared 2-core machine
    OpenMP's spin-waiting threads otherwise slow these tests down ~7x (the
    tiny models gain next to nothing from a second thread)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope='session')
def digits_root(tmp_path_factory):
    """scikit-learn's digits written by tools/dataset_converters/
    prepare_digits.py (the demo's data set), once per session."""
    from _cvt_train_utils import ROOT
    sys.path.insert(0, osp.join(ROOT, 'tools', 'dataset_converters'))
    from prepare_digits import prepare_digits
    root = str(tmp_path_factory.mktemp('digits') / 'digits')
    counts = prepare_digits(out=root)
    assert counts == dict(train=1438, val=359)
    return root
