#!/usr/bin/env bash
# Usage: bash tools/dist_train.sh CONFIG GPUS [train.py args]
# Multi-node: NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 PORT=29500 bash tools/dist_train.sh ...
# Without GPUs the processes train on CPU with the gloo backend.
set -e
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG GPUS [train.py args]" >&2
    exit 2
fi
source "$(dirname "$0")/_dist_launch.sh"
dist_launch "$2" train.py "$1" --launcher pytorch "${@:3}"
