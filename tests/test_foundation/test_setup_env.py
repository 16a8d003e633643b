"""tools/setup_env.sh's choices, as a user on a CPU machine, a GPU node or a
login node meets them: which mmcv ops flavour it builds, under which cache
key, with which nvcc, and what it says when a GPU is there but torch cannot
use it. The programs it runs (the venv's python and pip, nvidia-smi, nvcc)
are stand-ins that record their arguments; the real builds are measured in
the README ("On GPUs")."""
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def _nvidia_smi(bin_dir: Path, driver='580.95.05', driver_cuda='13.0',
                cap='9.0'):
    _executable(
        bin_dir / 'nvidia-smi', '#!/usr/bin/env bash\n'
        'case "$*" in\n'
        '  -L) echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)";;\n'
        f'  *compute_cap*) echo {cap}; echo {cap};;\n'
        f'  *driver_version*) echo {driver};;\n'
        f'  *) echo "| NVIDIA-SMI {driver}  Driver Version: {driver}  '
        f'CUDA Version: {driver_cuda} |";;\n'
        'esac\n')


def _nvcc(toolkit: Path, release: str) -> Path:
    return _executable(
        toolkit / 'bin' / 'nvcc', '#!/usr/bin/env bash\n'
        'case "$*" in\n'
        f'  --version) echo "Cuda compilation tools, release {release}, '
        f'V{release}.88";;\n'
        f'  *--dryrun*) echo "#\\$ _HERE_={toolkit}/bin" >&2;;\n'
        'esac\n')


def run_setup(tmp_path: Path, torch_line='2.14.1+cu130 13.0 1', gpu=False,
              path_dirs=(), **env_vars):
    """Run tools/setup_env.sh with a stand-in venv whose torch prints
    ``torch_line`` (version, CUDA version, whether it sees a GPU) and whose
    mmcv sdist download fails: the script stops at the build, having made
    every choice before it."""
    venv, site = tmp_path / 'venv', tmp_path / 'site'
    (site / 'nvidia' / 'cu13' / 'lib').mkdir(parents=True)
    (site / 'nvidia' / 'cu13' / 'include').mkdir()
    (site / 'nvidia' / 'cu13' / 'lib' / 'libcudart.so.13').write_text('')
    (site / 'nvidia' / 'cu13' / 'include' / 'cublas_v2.h').write_text('')
    log = tmp_path / 'pip.txt'
    _executable(
        venv / 'bin' / 'python', '#!/usr/bin/env bash\n'
        'case "$1 $2 $3" in\n'
        '  "-m pip download"*) echo "download refused" >&2; exit 1;;\n'
        f'  "-m pip install"*) echo "$*" >> {log}; exit 0;;\n'
        'esac\n'
        'if [ "$1" = "-c" ]; then case "$2" in\n'
        f'  *torch.version.cuda*) echo "{torch_line}"; exit 0;;\n'
        f'  *"import os, torch"*) echo "{site}"; exit 0;;\n'
        f'  *"import os, nvidia"*) echo "{site}/nvidia/cu13"; exit 0;;\n'
        'esac; exit 1; fi\n'
        'cat > /dev/null; exit 1\n')
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir(exist_ok=True)
    if gpu:
        _nvidia_smi(bin_dir, **(gpu if isinstance(gpu, dict) else {}))
    tmp = tmp_path / 'tmp'
    tmp.mkdir()
    # a PATH without nvidia-smi or nvcc of this machine's own
    path = [str(bin_dir), *map(str, path_dirs),
            os.path.dirname(sys.executable), '/usr/bin', '/bin']
    env = {k: v for k, v in os.environ.items()
           if k not in ('CUDA_HOME', 'TORCH_CUDA_ARCH_LIST', 'MMCVT_CUDA_OPS',
                        'MMCVT_CUDA_TOOLCHAIN', 'CUDA_VISIBLE_DEVICES')}
    env.update(MMCVT_VENV=str(venv), MMCVT_CACHE=str(tmp_path / 'cache'),
               TMPDIR=str(tmp), MMCVT_PYTHON=sys.executable,
               PATH=os.pathsep.join(path), **env_vars)
    res = subprocess.run(['bash', 'tools/setup_env.sh'], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    res.pip = log.read_text() if log.exists() else ''
    res.tmp_left = os.listdir(tmp)
    return res


def test_cpu_machine_builds_cpu_ops_under_a_cpu_key(tmp_path):
    res = run_setup(tmp_path, torch_line='2.14.1+cu130 13.0 0')
    assert res.returncode == 1
    assert 'download refused' in res.stderr
    assert 'setup_env: ERROR: step failed' in res.stderr
    assert 'wheels/torch-2.14.1-cu130-cuda13.0-py311-ops-cpu' in res.stdout
    assert 'cuda13.txt' not in res.pip
    # a failed build leaves no temporary folder behind
    assert res.tmp_left == []


def test_gpu_node_builds_cuda_ops_for_its_gpus_with_the_pinned_compiler(
        tmp_path):
    """No nvcc of CUDA 13 here (CUDA_HOME is a CUDA 12 toolkit): the
    pinned compiler wheels go into the venv, and the wheel is keyed on the
    visible GPUs' architecture."""
    _nvcc(tmp_path / 'cuda-12.4', '12.4')
    res = run_setup(tmp_path, gpu=True, CUDA_HOME=str(tmp_path / 'cuda-12.4'))
    assert 'download refused' in res.stderr
    assert 'is CUDA 12.4, torch needs CUDA 13.0: not used' in res.stderr
    assert 'requirements/cuda13.txt' in res.pip
    assert 'ops-cuda13.0-sm90' in res.stdout
    assert 'TORCH_CUDA_ARCH_LIST=9.0' in res.stdout
    # CUDA_HOME joins the compiler with torch's CUDA headers and libraries
    home = tmp_path / 'venv' / 'cuda-13.0'
    assert (home / 'include' / 'cublas_v2.h').exists()
    assert os.readlink(home / 'lib' / 'libcudart.so') == 'libcudart.so.13'
    assert res.tmp_left == []


def test_login_node_builds_cuda_ops_on_request_with_an_installed_nvcc(
        tmp_path):
    toolkit = tmp_path / 'cuda-13.0'
    _nvcc(toolkit, '13.0')
    res = run_setup(tmp_path, MMCVT_CUDA_OPS='1',
                    torch_line='2.14.1+cu130 13.0 0',
                    path_dirs=[toolkit / 'bin'])
    assert 'download refused' in res.stderr
    assert 'cuda13.txt' not in res.pip
    assert f'release 13.0 from {toolkit}' in res.stdout
    # no GPU to read the architecture from: the documented list
    assert ('ops-cuda13.0-sm75-sm80-sm86-sm89-sm90-sm100-sm120ptx'
            in res.stdout)


def test_pip_toolchain_and_arch_list_on_request(tmp_path):
    toolkit = tmp_path / 'cuda-13.0'
    _nvcc(toolkit, '13.0')
    res = run_setup(tmp_path, MMCVT_CUDA_OPS='1', MMCVT_CUDA_TOOLCHAIN='pip',
                    TORCH_CUDA_ARCH_LIST='8.0;9.0+PTX',
                    torch_line='2.14.1+cu130 13.0 0',
                    path_dirs=[toolkit / 'bin'])
    assert 'requirements/cuda13.txt' in res.pip
    assert 'ops-cuda13.0-sm80-sm90ptx' in res.stdout


def test_gpu_that_torch_cannot_use_is_an_error_that_names_the_driver(
        tmp_path):
    res = run_setup(tmp_path, gpu=dict(driver='535.104.05',
                                       driver_cuda='12.2'),
                    torch_line='2.14.1+cu130 13.0 0')
    assert res.returncode == 1
    err = res.stderr
    assert 'nvidia-smi lists 1 GPU(s) (driver 535.104.05' in err
    assert 'CUDA up to 12.2' in err
    assert 'needs NVIDIA driver >= 580.65.06' in err
    assert 'MMCVT_CUDA_OPS=0' in err
    assert 'download refused' not in err  # stopped before building
    # asked for CPU ops, it goes on with a warning
    res = run_setup(tmp_path / 'cpu', gpu=dict(driver='535.104.05'),
                    torch_line='2.14.1+cu130 13.0 0', MMCVT_CUDA_OPS='0')
    assert 'Going on with CPU ops' in res.stderr
    assert 'ops-cpu' in res.stdout


@pytest.mark.parametrize('env, message', [
    (dict(MMCVT_CUDA_OPS='yes'), 'MMCVT_CUDA_OPS=yes: use 1'),
    (dict(MMCVT_CUDA_TOOLCHAIN='conda'),
     'MMCVT_CUDA_TOOLCHAIN=conda: use auto'),
])
def test_bad_settings_are_named(tmp_path, env, message):
    res = run_setup(tmp_path, **env)
    assert res.returncode == 1 and message in res.stderr


def test_cuda_ops_need_a_cuda_torch(tmp_path):
    res = run_setup(tmp_path, MMCVT_CUDA_OPS='1',
                    torch_line='2.14.1+cpu none 0')
    assert res.returncode == 1
    assert 'is a CPU build' in res.stderr
