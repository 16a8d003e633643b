"""Shared by the whole suite: the ``cuda`` marker, the CPU for the CPU
tests on a GPU host, and the tiny CvT the model and tool tests build, with
its builders and helpers, as fixtures."""
import copy
import os
import socket
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


# ---- the tiny CvT and its helpers -------------------------------------------

#: 3 stages of 16, 32 and 48 channels; two blocks in the last stage (a block
#: after a block, and the class token); stochastic depth there only
TINY_ARCH = dict(
    embed_dims=[16, 32, 48],
    num_heads=[1, 2, 3],
    depths=[1, 1, 2],
    drop_path_rates=[0., 0., 0.1])


@pytest.fixture
def tiny_arch() -> dict:
    """The tiny arch, a fresh copy: ``CvT(tiny_arch)``, or a variant with
    ``dict(tiny_arch, depths=[1, 2, 3])``."""
    return copy.deepcopy(TINY_ARCH)


@pytest.fixture
def compile_arch(tiny_arch) -> dict:
    """A narrower tiny arch, one block per stage: ``torch.compile`` tests
    (compile time grows with the blocks)."""
    return dict(tiny_arch, embed_dims=[8, 16, 24], depths=[1, 1, 1],
                drop_path_rates=[0., 0., 0.])


@pytest.fixture
def img():
    """``img(*shape, seed=2)``: a reproducible normal random tensor."""

    def make(*shape, seed=2):
        return torch.randn(
            *shape, generator=torch.Generator().manual_seed(seed))

    return make


def _randomise_bn(model):
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * .5)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + .5)
            m.weight.data.copy_(1 + .2 * torch.randn(n, generator=g))
            m.bias.data.copy_(.2 * torch.randn(n, generator=g))


@pytest.fixture
def randomise_bn():
    """``randomise_bn(model)``: BatchNorm statistics and affine parameters
    away from their initial values, so that folding them shows."""
    return _randomise_bn


@pytest.fixture
def tiny_cvt(tiny_arch):
    """``tiny_cvt(arch=None, **kwargs)``: a seeded, initialised tiny CvT
    (or ``arch``) with randomised BatchNorms."""
    from mmcvt.models import CvT

    def make(arch=None, **kwargs):
        torch.manual_seed(0)
        model = CvT(tiny_arch if arch is None else arch, **kwargs)
        model.init_weights()
        _randomise_bn(model)
        return model

    return make


@pytest.fixture
def cvt_pair(tiny_cvt, tiny_arch):
    """``cvt_pair(**kwargs)``: (fast, reference) copies of one tiny CvT
    without stochastic depth (train-mode comparisons); the reference with
    ``set_fused(False)``."""

    def make(**kwargs):
        fast = tiny_cvt(dict(tiny_arch, drop_path_rates=[0., 0., 0.]),
                        **kwargs)
        return fast, copy.deepcopy(fast).set_fused(False)

    return make


def _assert_grads_close(fast, ref, rtol=1e-4):
    grads = [(n, p.grad, q.grad)
             for (n, p), q in zip(fast.named_parameters(), ref.parameters())]
    for name, a, b in grads:
        assert a is not None and b is not None, name
    largest = max(b.abs().max() for _, _, b in grads)
    for name, a, b in grads:
        scale = torch.maximum(b.abs().max(), 1e-3 * largest)
        err = (a - b).abs().max() / scale
        assert err < rtol, f'{name}: relative gradient error {err:.2e}'


@pytest.fixture
def assert_grads_close():
    """``assert_grads_close(fast, ref, rtol=1e-4)``: every gradient within
    ``rtol`` of the largest gradient of its tensor, or of the whole model for
    gradients that are zero up to rounding (the key bias's; the LayerNorm
    weight before a training-mode BatchNorm)."""
    return _assert_grads_close


@pytest.fixture
def free_port():
    """``free_port()``: a free TCP port on 127.0.0.1."""

    def find() -> int:
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            return s.getsockname()[1]

    return find
