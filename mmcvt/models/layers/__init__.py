# Copyright (c) mmcvt contributors. All rights reserved.
"""Layers of the CvT model: small building blocks (:mod:`.basic`) and the
fast paths (:mod:`.fast_paths`, entry point :func:`select_path`)."""
from .basic import (DropPath, QuickGELU, build_activation, build_norm,
                    conv_out, conv_out_2d, drop_path, resize_pos_embed)
from .fast_paths import Path, select_path

__all__ = [
    'DropPath', 'QuickGELU', 'build_activation', 'build_norm', 'conv_out',
    'conv_out_2d', 'drop_path', 'resize_pos_embed', 'Path', 'select_path'
]
