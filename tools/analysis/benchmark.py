#!/usr/bin/env python
# Copyright (c) mmcvt contributors. All rights reserved.
"""Speed / memory benchmark of mmcvt's CvT against the HuggingFace reference
on the same weights: throughput, peak memory, MACs and the achieved share of
the machine's matmul rate. The method and options are documented in
``mmcvt/utils/benchmark`` (``--help`` lists them).

Examples::

    # CPU, fp32, CvT-13 at 224, batch 32
    python tools/analysis/benchmark.py --archs 13 --sizes 224 \\
        --batch-size 32 --impls mmcvt hf --json work_dirs/bench.json
    # the full matrix on a GPU under bf16 autocast
    python tools/analysis/benchmark.py --device cuda --dtype bf16 \\
        --archs 13 21 w24 --sizes 224 384 \\
        --impls mmcvt mmcvt-deploy mmcvt-compile hf --json bench.json
"""
import os
import os.path as osp
import sys

# Silence the Kineto "profiler_start/stop" chatter of the CPU memory pass
# (6 is the level that mutes it in torch 2.14); must be set before torch is
# imported.
os.environ.setdefault('KINETO_LOG_LEVEL', '6')
# runnable from a checkout without installing mmcvt
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

from mmcvt.utils.benchmark import main  # noqa: E402

if __name__ == '__main__':
    main()
