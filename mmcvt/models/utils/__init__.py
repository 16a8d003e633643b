# Copyright (c) mmcvt contributors. All rights reserved.
from .ckpt_convert import (
                           adapt_state_dict,
                           convert_checkpoint,
                           convert_hf_to_mmcvt,
                           convert_official_to_mmcvt,
                           detect_format,
                           infer_arch,
                           strip_backbone,
                           unwrap,
)

__all__ = [
    'adapt_state_dict', 'convert_checkpoint', 'convert_hf_to_mmcvt',
    'convert_official_to_mmcvt', 'detect_format', 'infer_arch',
    'strip_backbone', 'unwrap'
]
