# Copyright (c) mmcvt contributors. All rights reserved.
"""Layers of the CvT model: small building blocks (:mod:`.basic`), the
execution plan and the fast form of each layer (:mod:`.fast_paths`), the
kernels behind them (:mod:`.kernels`) and the private torch APIs they use
(:mod:`.torch_internals`)."""
from .basic import (
    QUICK_GELU_ALPHA,
    DropPath,
    QuickGELU,
    build_activation,
    build_norm,
    conv_out,
    conv_out_2d,
    drop_path,
    init_official,
    resize_pos_embed,
)
from .fast_paths import REFERENCE_PLAN, Path, Plan, decide_plan

__all__ = [
    'QUICK_GELU_ALPHA', 'DropPath', 'QuickGELU', 'build_activation',
    'build_norm', 'conv_out', 'conv_out_2d', 'drop_path', 'init_official',
    'resize_pos_embed',
    'Path', 'Plan', 'REFERENCE_PLAN', 'decide_plan'
]
