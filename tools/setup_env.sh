#!/usr/bin/env bash
# Bring this machine to a working mmcvt environment, idempotently.
#
#   bash tools/setup_env.sh          # creates/updates .venv in the repository root
#
# What it installs (see requirements/): torch 2.14.1 + torchvision 0.29.1, mmengine 0.10.7,
# mmcv 2.1.0 with compiled ops (built once from the sdist with its C++ standard patched to
# C++20, cached as a wheel), mmpretrain 1.2.0, mmdet 3.3.0, mmsegmentation 1.2.2, the test
# dependencies and mmcvt itself (editable).
#
# Environment variables:
#   MMCVT_VENV    where the virtual environment lives. Defaults to <repo>/.venv
#   MMCVT_CACHE   where the built mmcv wheel is cached. Defaults to ~/.cache/mmcvt
#   MMCVT_PYTHON  the interpreter that creates the venv. Defaults to python3.11 (or python3)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MMCVT_VENV:-$ROOT/.venv}
CACHE=${MMCVT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmcvt}
TORCH_VERSION=2.14.1
MMCV_VERSION=2.1.0

step() { echo "setup_env [$(date +%T)] $*"; }
die() {
    echo "setup_env: ERROR: $*" >&2
    exit 1
}
trap 'die "step failed (line $LINENO): see the output above. Fix the cause and run tools/setup_env.sh again; finished steps are skipped."' ERR

PY=${MMCVT_PYTHON:-}
if [ -z "$PY" ]; then
    if command -v python3.11 >/dev/null; then PY=python3.11; else PY=python3; fi
fi
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null ||
    die "Python 3.11 is required ($PY is $("$PY" --version 2>&1)). Set MMCVT_PYTHON=/path/to/python3.11."

# The stamp records what was installed; when nothing changed, the heavy steps are skipped.
# (The repository path is part of it: the editable install points there.)
want_stamp=$( (echo "$ROOT"; cat "$ROOT"/requirements/*.txt "$ROOT/tools/setup_env.sh" "$ROOT/setup.py") | sha256sum | cut -d' ' -f1)
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

# --- mmcv with compiled ops -----------------------------------------------------------------
# No mmcv 2.1.0 wheel exists for torch 2.14, and its setup.py hard-codes -std=c++14/17 while
# torch 2.14 headers need C++20. Build once, keep the wheel, reuse it.
# The wheel links against this torch build: the key names its version with
# the local tag (+cpu, +cu130, ...) and its CUDA version.
torch_build=$("$VENV/bin/python" -c 'import torch; print(torch.__version__.replace("+", "-") + "-cuda" + (torch.version.cuda or "none"))')
wheel_dir=$CACHE/wheels/torch-$torch_build-py311
have_mmcv() {
    "$VENV/bin/python" - <<EOF 2>/dev/null
import mmcv, mmcv.ops
assert mmcv.__version__ == '$MMCV_VERSION'
EOF
}
if have_mmcv; then
    step "mmcv $MMCV_VERSION with ops already installed"
else
    wheel=$(ls "$wheel_dir"/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -n1 || true)
    if [ -z "$wheel" ]; then
        step "building mmcv $MMCV_VERSION with compiled ops for torch $torch_build (about 13 minutes on 2 cores; done once, cached in $wheel_dir)"
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
        MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
            "$VENV/bin/python" -m pip wheel --no-deps --no-build-isolation -w "$build/dist" "$src"
        mkdir -p "$wheel_dir"
        built=$(ls "$build"/dist/mmcv-*.whl)
        cp "$built" "$wheel_dir/.partial.whl"
        mv "$wheel_dir/.partial.whl" "$wheel_dir/$(basename "$built")"
        wheel=$wheel_dir/$(basename "$built")
    fi
    step "installing mmcv from $wheel"
    "${PIP[@]}" -q --no-deps --force-reinstall "$wheel"
fi

step "OpenMMLab packages and test dependencies"
"${PIP[@]}" -q -r "$ROOT/requirements.txt"

step "mmcvt (editable)"
"${PIP[@]}" -q --no-deps --no-build-isolation -e "$ROOT"

step "checking imports"
"$VENV/bin/python" - <<'EOF'
import mmcv, mmcv.ops, mmengine, mmpretrain, mmdet, mmseg, torch, torchvision, transformers, mmcvt
print('torch', torch.__version__, '| torchvision', torchvision.__version__, '| mmcv', mmcv.__version__,
      '| mmengine', mmengine.__version__, '| mmpretrain', mmpretrain.__version__,
      '| mmdet', mmdet.__version__, '| mmseg', mmseg.__version__,
      '| transformers', transformers.__version__, '| mmcvt', mmcvt.__version__)
EOF
echo "$want_stamp" >"$stamp_file"
step "done: $VENV"
