#!/usr/bin/env bash
# Bring this machine to a working mmcvt environment, idempotently.
#
#   bash tools/setup_env.sh                      # creates/updates .venv in the repository root
#   MMCVT_CUDA_OPS=1 bash tools/setup_env.sh     # mmcv's CUDA ops also where no GPU is visible
#
# What it installs (see requirements/): torch 2.14.1 + torchvision 0.29.1, mmengine 0.10.7,
# mmcv 2.1.0 with compiled ops (built once from the sdist with its C++ standard patched to
# C++20, cached as a wheel), mmpretrain 1.2.0, mmdet 3.3.0, mmsegmentation 1.2.2, the test
# dependencies and mmcvt itself (editable).
#
# mmcv's ops come in two flavours, each cached under its own key: CPU ops, or CPU + CUDA ops
# for a list of GPU architectures. CUDA ops are built when nvidia-smi lists a GPU, or when
# asked (a login node without GPUs). They need an nvcc of torch's CUDA version: the one in
# CUDA_HOME, on the PATH or in /usr/local/cuda when its release matches, else the pinned
# CUDA 13.0 compiler wheels of requirements/cuda13.txt, installed into the venv.
#
# Environment variables:
#   MMCVT_VENV       where the virtual environment lives. Defaults to <repo>/.venv
#   MMCVT_CACHE      where the built mmcv wheels are cached. Defaults to ~/.cache/mmcvt
#   MMCVT_PYTHON     the interpreter that creates the venv. Defaults to python3.11 (or python3)
#   MMCVT_CUDA_OPS   1: build mmcv's CUDA ops; 0: CPU ops only. Defaults to 1 where
#                    nvidia-smi lists a GPU, else 0
#   TORCH_CUDA_ARCH_LIST  the GPU architectures of the CUDA ops, e.g. "8.0;9.0". Defaults to
#                    those of the visible GPUs, else to DEFAULT_CUDA_ARCHS below
#   MMCVT_CUDA_TOOLCHAIN  auto: a matching installed nvcc (CUDA_HOME's where it is set, else
#                    the PATH's or /usr/local/cuda's), else the pinned wheels; pip: the pinned
#                    wheels always. Defaults to auto
#   MAX_JOBS         parallel compile jobs of the mmcv build. Defaults to the number of cores
#                    (for CUDA ops, at most one per 3 GB of available memory)
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MMCVT_VENV:-$ROOT/.venv}
CACHE=${MMCVT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmcvt}
TORCH_VERSION=2.14.1
MMCV_VERSION=2.1.0
# Every architecture CUDA 13 compiles for, from Turing to Blackwell, plus PTX for newer ones.
# One architecture builds in 30 to 55 minutes on 2 cores (README); each one more adds its
# device code.
DEFAULT_CUDA_ARCHS='7.5;8.0;8.6;8.9;9.0;10.0;12.0+PTX'
# the oldest NVIDIA Linux driver of each CUDA major version (CUDA's release notes)
DRIVER_FOR_CUDA_13=580.65.06
DRIVER_FOR_CUDA_12=525.60.13

step() { echo "setup_env [$(date +%T)] $*"; }
die() {
    echo "setup_env: ERROR: $*" >&2
    exit 1
}
warn() { echo "setup_env: WARNING: $*" >&2; }
trap 'die "step failed (line $LINENO): see the output above. Fix the cause and run tools/setup_env.sh again; finished steps are skipped."' ERR

PY=${MMCVT_PYTHON:-}
if [ -z "$PY" ]; then
    if command -v python3.11 >/dev/null; then PY=python3.11; else PY=python3; fi
fi
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null ||
    die "Python 3.11 is required ($PY is $("$PY" --version 2>&1)). Set MMCVT_PYTHON=/path/to/python3.11."

# --- which mmcv ops: decided before anything is installed, so that it is part of the stamp --
gpus=$( (command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null || true) | grep '^GPU ' || true)
case "${MMCVT_CUDA_OPS:-}" in
    1) cuda_ops=1 ;;
    0) cuda_ops=0 ;;
    '') if [ -n "$gpus" ]; then cuda_ops=1; else cuda_ops=0; fi ;;
    *) die "MMCVT_CUDA_OPS=$MMCVT_CUDA_OPS: use 1 (build mmcv's CUDA ops), 0 (CPU ops only), or leave it unset (CUDA ops where nvidia-smi lists a GPU)." ;;
esac
case "${MMCVT_CUDA_TOOLCHAIN:-auto}" in
    auto | pip) toolchain=${MMCVT_CUDA_TOOLCHAIN:-auto} ;;
    *) die "MMCVT_CUDA_TOOLCHAIN=$MMCVT_CUDA_TOOLCHAIN: use auto (a matching installed nvcc, else the pinned wheels) or pip (the pinned wheels of requirements/cuda13.txt)." ;;
esac
if [ $cuda_ops = 1 ]; then
    if [ -n "${TORCH_CUDA_ARCH_LIST:-}" ]; then
        archs=$TORCH_CUDA_ARCH_LIST
    elif [ -n "$gpus" ]; then
        archs=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | sort -u | paste -sd';')
    else
        archs=$DEFAULT_CUDA_ARCHS
    fi
    [ -n "$archs" ] || die "could not read the GPUs' compute capability from nvidia-smi; set TORCH_CUDA_ARCH_LIST, e.g. TORCH_CUDA_ARCH_LIST=9.0"
    ops="cuda;$archs"
else
    ops=cpu
fi

# The stamp records what was installed; when nothing changed, the heavy steps are skipped.
# (The repository path is part of it: the editable install points there.)
want_stamp=$( (echo "$ROOT"; echo "$ops"; cat "$ROOT"/requirements/*.txt "$ROOT/tools/setup_env.sh" "$ROOT/setup.py") | sha256sum | cut -d' ' -f1)
stamp_file=$VENV/.mmcvt-setup-stamp
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$want_stamp" ] &&
    "$VENV/bin/python" -c 'import mmcv.ops, mmpretrain, mmdet, mmseg, mmcvt' 2>/dev/null; then
    step "environment $VENV is up to date"
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    step "creating virtual environment $VENV"
    "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -c "$ROOT/requirements/constraints.txt")

step "build tools"
"${PIP[@]}" -q -r "$ROOT/requirements/build.txt"

step "torch $TORCH_VERSION + torchvision"
"${PIP[@]}" -q -r "$ROOT/requirements/runtime.txt"

# torch's version, CUDA version ("none" for a CPU build) and whether it can use a GPU
read -r torch_version torch_cuda torch_gpu < <("$VENV/bin/python" -c \
    'import torch; print(torch.__version__, torch.version.cuda or "none", int(torch.cuda.is_available()))' || true)
[ -n "${torch_gpu:-}" ] || die "torch does not import in $VENV: see the output above"
if [ -n "$gpus" ] && [ "$torch_gpu" = 0 ]; then
    # a GPU is here and torch cannot use it: almost always a driver older than torch's CUDA
    driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n1 || true)
    driver_cuda=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p' | head -n1 || true)
    need=DRIVER_FOR_CUDA_${torch_cuda%%.*}
    msg="nvidia-smi lists $(echo "$gpus" | wc -l) GPU(s) (driver ${driver:-unknown}, which supports CUDA up to ${driver_cuda:-unknown}), but torch $torch_version (CUDA $torch_cuda) cannot use them."
    if [ "$torch_cuda" != none ]; then
        msg="$msg torch's CUDA $torch_cuda needs NVIDIA driver >= ${!need:-a newer one}. Update the driver; or install a torch $TORCH_VERSION build for CUDA ${driver_cuda:-up to what the driver supports}"
        msg="$msg (PyTorch publishes cu126 and cu128 builds) into $VENV before running this script again: it keeps an installed torch $TORCH_VERSION of any CUDA build and builds mmcv for it."
    fi
    if [ "${MMCVT_CUDA_OPS:-}" = 0 ]; then
        warn "$msg Going on with CPU ops (MMCVT_CUDA_OPS=0): training will run on the CPU."
    else
        die "$msg To set up for the CPU anyway, run with MMCVT_CUDA_OPS=0."
    fi
fi
if [ $cuda_ops = 1 ] && [ "$torch_cuda" = none ]; then
    die "MMCVT_CUDA_OPS=1, but torch $torch_version is a CPU build, so mmcv's CUDA ops cannot be built. Install a CUDA build of torch $TORCH_VERSION, or run with MMCVT_CUDA_OPS=0."
fi

# --- mmcv with compiled ops -----------------------------------------------------------------
# No mmcv 2.1.0 wheel exists for torch 2.14, and its setup.py hard-codes -std=c++14/17 while
# torch 2.14 headers need C++20. Build once, keep the wheel, reuse it.
# The wheel links against this torch build: the key names its version with the local tag
# (+cpu, +cu130, ...), its CUDA version and the ops flavour (cpu, or cudaX.Y-<archs>), so that
# a CPU build is never taken for a GPU.
if [ $cuda_ops = 1 ]; then
    flavour=cuda$torch_cuda-sm$(echo "$archs" | tr -s ' ;,' '-' | sed -e 's/\.//g' -e 's/+PTX/ptx/g; s/-/-sm/g')
    want_ops_cuda=$torch_cuda
else
    flavour=cpu
    want_ops_cuda='not available'
fi
wheel_dir=$CACHE/wheels/torch-${torch_version/+/-}-cuda$torch_cuda-py311-ops-$flavour
have_mmcv() {
    "$VENV/bin/python" - "$want_ops_cuda" <<EOF 2>/dev/null
import sys
import mmcv, mmcv.ops
assert mmcv.__version__ == '$MMCV_VERSION'
assert mmcv.ops.get_compiling_cuda_version() == sys.argv[1]
EOF
}

# the toolkit folder of an nvcc whose release matches torch's CUDA major version: CUDA_HOME's
# alone where it is set (as torch's extension build does), else the PATH's, else /usr/local/cuda
find_nvcc() {
    local n rel here
    local -a candidates=("${CUDA_HOME:-}/bin/nvcc")
    if [ -z "${CUDA_HOME:-}" ]; then candidates=($(command -v nvcc || true) /usr/local/cuda/bin/nvcc); fi
    for n in "${candidates[@]}"; do
        [ -x "$n" ] || continue
        rel=$("$n" --version 2>/dev/null | sed -n 's/.*release \([0-9][0-9.]*\),.*/\1/p')
        if [ "${rel%%.*}" != "${torch_cuda%%.*}" ]; then
            echo "setup_env: $n is CUDA ${rel:-?}, torch needs CUDA $torch_cuda: not used" >&2
            continue
        fi
        # the toolkit nvcc really runs from (it may be a wrapper or a link)
        here=$("$n" --dryrun -x cu -c /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ _HERE_=//p' | head -n1)
        echo "$(cd "${here:-$(dirname "$n")}/.." && pwd)"
        return 0
    done
    return 1
}

# A CUDA_HOME for torch's extension build: the toolkit's compiler with the CUDA headers and
# libraries of torch's own nvidia-* wheels beside its own (cuBLAS, cuSPARSE, ... headers that
# ATen includes), and the libcudart.so link that the wheels leave out.
join_cuda_home() {
    local toolkit=$1 out=$2 site src e rt
    site=$("$VENV/bin/python" -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
    rm -rf "$out"
    mkdir -p "$out/include" "$out/lib"
    ln -s "$toolkit/bin" "$out/bin"
    if [ -d "$toolkit/nvvm" ]; then ln -s "$toolkit/nvvm" "$out/nvvm"; fi
    for sub in include lib; do
        for src in "$toolkit/$sub" "$toolkit/${sub}64" "$toolkit/targets/x86_64-linux/$sub" \
            "$site"/nvidia/cu"${torch_cuda%%.*}"/$sub "$site"/nvidia/*/$sub; do
            [ -d "$src" ] || continue
            for e in "$src"/*; do
                [ -e "$out/$sub/$(basename "$e")" ] || ln -s "$e" "$out/$sub/"
            done
        done
    done
    ln -s lib "$out/lib64"
    if [ ! -e "$out/lib/libcudart.so" ]; then
        rt=$(cd "$out/lib" && ls libcudart.so.* 2>/dev/null | head -n1 || true)
        [ -n "$rt" ] || die "no libcudart.so.* in the CUDA toolkit ($toolkit) or torch's nvidia wheels"
        ln -s "$rt" "$out/lib/libcudart.so"
    fi
}

build_mmcv() {
    local src built start secs toolkit cuda_home
    local -a build_env=(MMCV_WITH_OPS=1 "MAX_JOBS=${MAX_JOBS:-$(nproc)}")
    if [ $cuda_ops = 1 ]; then
        toolkit=
        if [ "$toolchain" = auto ]; then toolkit=$(find_nvcc || true); fi
        if [ -z "$toolkit" ]; then
            [ "$torch_cuda" = 13.0 ] || die "no nvcc of CUDA $torch_cuda found (${CUDA_HOME:+CUDA_HOME=$CUDA_HOME}${CUDA_HOME:-PATH, /usr/local/cuda}), and the pinned compiler wheels are CUDA 13.0. Install the CUDA $torch_cuda toolkit and set CUDA_HOME, or run with MMCVT_CUDA_OPS=0."
            step "CUDA 13.0 compiler wheels (requirements/cuda13.txt) into $VENV"
            "${PIP[@]}" -q -r "$ROOT/requirements/cuda13.txt"
            toolkit=$("$VENV/bin/python" -c 'import os, nvidia; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')
        fi
        cuda_home=$VENV/cuda-$torch_cuda
        join_cuda_home "$toolkit" "$cuda_home"
        step "nvcc: $("$cuda_home/bin/nvcc" --version | sed -n 's/.*\(release [0-9.]*\).*/\1/p') from $toolkit; CUDA_HOME=$cuda_home; TORCH_CUDA_ARCH_LIST=$archs"
        build_env+=(FORCE_CUDA=1 "CUDA_HOME=$cuda_home" "TORCH_CUDA_ARCH_LIST=$archs" "PATH=$cuda_home/bin:$PATH")
        if [ -z "${MAX_JOBS:-}" ]; then
            # an nvcc job can take 3 GB: no more jobs than the memory holds
            local mem_gb jobs
            mem_gb=$(awk '/^MemAvailable:/ {print int($2 / 1048576)}' /proc/meminfo 2>/dev/null || echo 0)
            jobs=$((mem_gb / 3 < $(nproc) ? mem_gb / 3 : $(nproc)))
            build_env[1]="MAX_JOBS=$((jobs > 0 ? jobs : 1))"
        fi
    else
        # CPU ops only, also where torch sees a GPU (mmcv builds CUDA ops whenever it does)
        build_env+=(FORCE_CUDA=0 CUDA_VISIBLE_DEVICES=)
    fi
    step "building mmcv $MMCV_VERSION with $flavour ops for torch $torch_version (on 2 cores CPU ops take about 15 minutes, CUDA ops for one architecture 30 to 55; done once, cached in $wheel_dir)"
    build=$(mktemp -d)
    # the build folder goes away however this step ends
    trap 'rm -rf "$build"' EXIT
    "$VENV/bin/python" -m pip download -q --no-deps --no-binary mmcv --no-build-isolation \
        -c "$ROOT/requirements/constraints.txt" -d "$build" "mmcv==$MMCV_VERSION"
    tar -xzf "$build"/mmcv-$MMCV_VERSION.tar.gz -C "$build"
    src=$build/mmcv-$MMCV_VERSION
    sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$src/setup.py"
    grep -q -- '-std=c++20' "$src/setup.py" || die "could not patch mmcv's C++ standard flags"
    if grep -q -- '-std=c++1[47]' "$src/setup.py"; then die "mmcv setup.py still has c++14/17 flags"; fi
    start=$(date +%s)
    env "${build_env[@]}" "$VENV/bin/python" -m pip wheel --no-deps --no-build-isolation -w "$build/dist" "$src"
    secs=$(($(date +%s) - start))
    mkdir -p "$wheel_dir"
    built=$(ls "$build"/dist/mmcv-*.whl)
    cp "$built" "$wheel_dir/.partial.whl"
    mv "$wheel_dir/.partial.whl" "$wheel_dir/$(basename "$built")"
    printf 'ops: %s\nbuild seconds: %s\ncores: %s\njobs: %s\n' "$flavour" "$secs" "$(nproc)" \
        "${build_env[1]#MAX_JOBS=}" >"$wheel_dir/build-info.txt"
    step "mmcv built in ${secs}s"
    wheel=$wheel_dir/$(basename "$built")
}

if have_mmcv; then
    step "mmcv $MMCV_VERSION with $flavour ops already installed"
else
    wheel=$(ls "$wheel_dir"/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -n1 || true)
    if [ -z "$wheel" ]; then build_mmcv; fi
    step "installing mmcv from $wheel"
    "${PIP[@]}" -q --no-deps --force-reinstall "$wheel"
fi

step "OpenMMLab packages and test dependencies"
"${PIP[@]}" -q -r "$ROOT/requirements.txt"

step "mmcvt (editable)"
"${PIP[@]}" -q --no-deps --no-build-isolation -e "$ROOT"

step "checking imports and mmcv's $flavour ops"
"$VENV/bin/python" - "$want_ops_cuda" <<'EOF'
import sys

import mmcv, mmcv.ops, mmengine, mmpretrain, mmdet, mmseg, torch, torchvision, transformers, mmcvt
print('torch', torch.__version__, '| torchvision', torchvision.__version__, '| mmcv', mmcv.__version__,
      '| mmengine', mmengine.__version__, '| mmpretrain', mmpretrain.__version__,
      '| mmdet', mmdet.__version__, '| mmseg', mmseg.__version__,
      '| transformers', transformers.__version__, '| mmcvt', mmcvt.__version__)
compiled = mmcv.ops.get_compiling_cuda_version()
if compiled != sys.argv[1]:
    sys.exit(f'setup_env: ERROR: mmcv ops compiled for CUDA {compiled!r}, expected {sys.argv[1]!r}')
print('mmcv ops: CUDA', compiled)
if compiled != 'not available' and torch.cuda.is_available():
    # the CUDA kernels themselves, against the CPU ones
    from mmcv.ops import nms, roi_align
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [20., 20., 30., 30.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    keep_gpu = nms(boxes.cuda(), scores.cuda(), 0.5)[1].cpu().tolist()
    if keep_gpu != [0, 2]:
        sys.exit(f'setup_env: ERROR: mmcv nms on CUDA kept {keep_gpu}, expected [0, 2]')
    feat = torch.arange(64.).reshape(1, 1, 8, 8)
    rois = torch.tensor([[0., 1., 1., 5., 5.]])
    ref = roi_align(feat, rois, (2, 2), 1.0, 2, 'avg', False)
    got = roi_align(feat.cuda(), rois.cuda(), (2, 2), 1.0, 2, 'avg', False).cpu()
    if not torch.allclose(got, ref, atol=1e-5):
        sys.exit(f'setup_env: ERROR: mmcv roi_align on CUDA gave {got.flatten().tolist()}, '
                 f'the CPU {ref.flatten().tolist()}')
    print('mmcv ops on', torch.cuda.get_device_name(), ': nms and roi_align match the CPU')
EOF
echo "$want_stamp" >"$stamp_file"
step "done: $VENV"
