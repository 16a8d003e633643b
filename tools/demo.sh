#!/usr/bin/env bash
# The main job: set up the environment, then, on real handwritten digits
# that scikit-learn ships (no download), on the CPU:
#   cls  train a tiny CvT classifier on the 1,797 digit scans and evaluate it
#   det  train Mask R-CNN with that CvT (loaded from the classifier) on
#        scenes of digits, evaluate it at three test scales, draw pictures
#        (work dir: pictures.png) and training curves (curves.png)
#   seg  the same with UperNet
#   all  the three in turn (the default)
#   bash tools/demo.sh [cls|det|seg|all] [train.py args]
# The other arguments go to every tools/train.py call (e.g. --cfg-options
# model.backbone.drop_path_rate=0.2); tools/test.py gets the ones it
# understands too (--cfg-options, --launcher), not training-only ones such as
# --amp or --resume. det and seg train the classifier first when it is not
# there. Work dirs: $WORK_DIRS/<config name> (WORK_DIRS=work_dirs).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
JOB=all
case "${1:-}" in
    cls | det | seg | all) JOB=$1; shift ;;
    -*|'') ;;
    *) echo "demo.sh: unknown job '$1' (cls, det, seg or all)" >&2; exit 2 ;;
esac
bash "$ROOT/tools/setup_env.sh"
source "$ROOT/tools/_python.sh"
cd "$ROOT"
WORK_DIRS=${WORK_DIRS:-work_dirs}
CLS_CONFIG=configs/demo/cvt-tiny_digits.py
DET_CONFIG=configs/demo/mask-rcnn_cvt-tiny_fpn_digit-scenes.py
SEG_CONFIG=configs/demo/upernet_cvt-tiny_digit-scenes.py
# the dense jobs' test scales: 0.75x, 1x (the training scale) and 1.5x of
# the (224, 160) canvas they resize to; (168, 120) is not a multiple of 32.
# Both test pipelines resize in their second transform.
SCALES=("168,120" "224,160" "336,240")
SCALE_KEY=test_dataloader.dataset.pipeline.1.scale

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

work_dir() {  # the work dir of a config
    local name
    name=$(basename "$1")
    echo "$WORK_DIRS/${name%.py}"
}

run_cls() {
    local work
    work=$(work_dir "$CLS_CONFIG")
    "$PYTHON" tools/dataset_converters/prepare_digits.py --out data/digits
    "$PYTHON" tools/train.py "$CLS_CONFIG" --work-dir "$work" "$@"
    "$PYTHON" tools/test.py "$CLS_CONFIG" "$(cat "$work/last_checkpoint")" \
        --work-dir "$work/test" ${test_args[@]+"${test_args[@]}"}
    "$PYTHON" tools/analysis/plot_curves.py "$work" --out "$work/curves.png" \
        --labels "CvT from random init" --title "digits classifier"
}

# train CONFIG from the classifier, then test it at every scale (pictures at
# the training scale)
run_dense() {
    local config=$1 work classifier scale pictures show
    shift
    work=$(work_dir "$config")
    pictures=$work/pictures  # absolute: the toolkits place relative ones apart
    [[ $pictures == /* ]] || pictures=$ROOT/$pictures
    classifier="$(work_dir "$CLS_CONFIG")/last_checkpoint"
    if [[ ! -f "$classifier" ]]; then
        echo "demo.sh: no digits classifier in ${classifier%/*}; training it first"
        run_cls "$@"
    fi
    "$PYTHON" tools/dataset_converters/prepare_digit_scenes.py \
        --out data/digit_scenes
    "$PYTHON" tools/analysis/check_dataset.py "$config" --splits train val
    "$PYTHON" tools/train.py "$config" --work-dir "$work" "$@" \
        --cfg-options model.backbone.init_cfg.checkpoint="$(cat "$classifier")"
    for scale in "${SCALES[@]}"; do
        show=()
        if [[ $scale == "224,160" ]]; then show=(--show-dir "$pictures"); fi
        "$PYTHON" tools/test.py "$config" "$(cat "$work/last_checkpoint")" \
            --work-dir "$work/test_${scale/,/x}" ${show[@]+"${show[@]}"} \
            ${test_args[@]+"${test_args[@]}"} \
            --cfg-options "$SCALE_KEY=($scale)"
    done
    # the first three validation scenes, ground truth left, prediction right
    # (mmseg draws into pictures/vis_data/vis_image)
    local shown=()
    if [[ -d $pictures ]]; then
        mapfile -t shown < <(find "$pictures" -name '*.png' |
            sort | head -n 3)
    fi
    if ((${#shown[@]})); then
        "$PYTHON" tools/visualization/stack_pictures.py "${shown[@]}" \
            --scale 3 --out "$work/pictures.png"
    fi
    # with the from-scratch control when it was trained (configs/demo/README.md)
    "$PYTHON" tools/analysis/plot_curves.py "$work" "${work}_scratch" \
        --labels "CvT from the classifier" "CvT from scratch" \
        --out "$work/curves.png" --title "$(basename "${config%.py}")"
}

case "$JOB" in
    cls | all) run_cls "$@" ;;&
    det | all) run_dense "$DET_CONFIG" "$@" ;;&
    seg | all) run_dense "$SEG_CONFIG" "$@" ;;
esac
"$PYTHON" tools/analysis/demo_summary.py --work-dirs "$WORK_DIRS" --job "$JOB"
