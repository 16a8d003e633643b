import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import pytest  # noqa: E402
import torch  # noqa: E402


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
