# Sourced by dist_train.sh and dist_test.sh: `dist_launch GPUS SCRIPT [args]`
# runs tools/SCRIPT with the args in GPUS processes on this node through
# torchrun (torch.distributed.run). Multi-node: NNODES, NODE_RANK,
# MASTER_ADDR and PORT (the rendezvous), as environment variables. It
# replaces the calling shell (exec): call it last.
DIR=$(dirname "$0")
source "$DIR/_python.sh"

dist_launch() {
    local gpus=$1 script=$2
    NNODES=${NNODES:-1}
    NODE_RANK=${NODE_RANK:-0}
    PORT=${PORT:-29500}
    MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
    # exec: torchrun takes this shell's place, so that Ctrl-C, kill and a
    # cluster's preemption signal reach it, and it stops every rank
    PYTHONPATH="$DIR/..":${PYTHONPATH:-} \
    exec "$PYTHON" -m torch.distributed.run \
        --nnodes=$NNODES \
        --node_rank=$NODE_RANK \
        --master_addr=$MASTER_ADDR \
        --nproc_per_node=$gpus \
        --master_port=$PORT \
        "$DIR/$script" \
        "${@:3}"
}
