#!/usr/bin/env bash
# Usage: bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args]
# Multi-node: as tools/dist_train.sh (NNODES, NODE_RANK, MASTER_ADDR, PORT).
set -e
if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT GPUS [test.py args]" >&2
    exit 2
fi
source "$(dirname "$0")/_dist_launch.sh"
dist_launch "$3" test.py "$1" "$2" --launcher pytorch "${@:4}"
