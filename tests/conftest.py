import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import pytest  # noqa: E402
import torch  # noqa: E402

# Whether torch can use a GPU here, read once before any test hides it.
HAS_CUDA = torch.cuda.is_available()


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'cuda: needs an NVIDIA GPU that torch can use; skipped, '
        'with that reason, where there is none')


def pytest_collection_modifyitems(config, items):
    if HAS_CUDA:
        return
    skip = pytest.mark.skip(reason='needs a GPU: torch.cuda.is_available() '
                            'is False on this machine')
    for item in items:
        if 'cuda' in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def cpu_unless_marked_cuda(request, monkeypatch):
    """The CPU tests run on the CPU on a GPU host too: mmengine's Runner
    would otherwise move their models to the GPU (and their tolerances,
    bit-exact resumes and gloo process groups are the CPU's). Hidden the
    usual way, ``CUDA_VISIBLE_DEVICES=`` for the processes a test starts,
    and ``torch.cuda.is_available()`` and mmengine's device for this one,
    whose CUDA state is already read. Tests marked ``cuda`` see the GPU."""
    if not HAS_CUDA or 'cuda' in request.keywords:
        yield
        return
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 0)
    # mmengine decides its device once, at import
    import mmengine.device.utils as mmengine_device
    monkeypatch.setattr(mmengine_device, 'DEVICE', 'cpu')
    yield


@pytest.fixture(scope='module')
def one_torch_thread():
    """One intra-op thread for a test module (``pytestmark =
    pytest.mark.usefixtures('one_torch_thread')``): on a small shared CPU,
    2 OpenMP threads that compete with other processes are >10x slower
    than 1."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
