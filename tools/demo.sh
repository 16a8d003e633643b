#!/usr/bin/env bash
# The main job: set up the environment, prepare the real handwritten-digits
# data set that scikit-learn ships (1,797 images, no download), train a small
# CvT on it on the CPU, and evaluate the final checkpoint.
#   bash tools/demo.sh [train.py args, e.g. --cfg-options train_cfg.max_epochs=3]
# Every argument goes to tools/train.py; tools/test.py gets the ones it
# understands too (--cfg-options, --launcher), not training-only ones such as
# --amp or --resume.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/setup_env.sh"
source "$ROOT/tools/_python.sh"
cd "$ROOT"
CONFIG=configs/demo/cvt-tiny_digits.py
WORK_DIR=${WORK_DIR:-work_dirs/cvt-tiny_digits}

test_args=()
passing=false
for arg in "$@"; do
    case "$arg" in
        --cfg-options | --launcher) passing=true; test_args+=("$arg") ;;
        --launcher=*) passing=false; test_args+=("$arg") ;;
        -*) passing=false ;;
        *) if $passing; then test_args+=("$arg"); fi ;;
    esac
done

"$PYTHON" tools/dataset_converters/prepare_digits.py --out data/digits
"$PYTHON" tools/train.py "$CONFIG" --work-dir "$WORK_DIR" "$@"
CKPT=$(cat "$WORK_DIR/last_checkpoint")
"$PYTHON" tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK_DIR/test" ${test_args[@]+"${test_args[@]}"}
