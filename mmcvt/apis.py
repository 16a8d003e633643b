# Copyright (c) mmcvt contributors. All rights reserved.
"""Building a model of any config (mmpretrain, mmdet, mmseg) with its
checkpoint, for the tools that look inside or export a trained CvT."""
from typing import Optional, Tuple

import torch
from mmengine.config import Config

__all__ = ['init_model', 'normalisation', 'TensorForward']


def init_model(config: str,
               checkpoint: Optional[str] = None) -> Tuple[torch.nn.Module,
                                                          Config]:
    """The config's model in its own registry scope, with ``checkpoint`` (a
    file or ``hf://owner/repo``) loaded, in eval mode on the CPU."""
    from mmengine.registry import MODELS, DefaultScope
    from mmengine.runner import load_checkpoint
    cfg = Config.fromfile(config)
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', 'mmpretrain')):
        model = MODELS.build(cfg.model)
    if checkpoint is not None:
        load_checkpoint(
            model, checkpoint, map_location='cpu', logger='silent')
    return model.eval(), cfg


def normalisation(cfg: Config) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(mean, std)`` of the config's data preprocessor, ``(1, 3, 1, 1)``
    each, in RGB order."""
    pre = cfg.get('data_preprocessor') or cfg.model.get(
        'data_preprocessor', {})
    mean = torch.tensor(pre.get('mean', [0., 0., 0.])).view(1, 3, 1, 1)
    std = torch.tensor(pre.get('std', [1., 1., 1.])).view(1, 3, 1, 1)
    return mean, std


class TensorForward(torch.nn.Module):
    """An mmpretrain classifier as images -> logits (``mode='tensor'``:
    backbone, neck, head), for tools that call a plain ``forward``."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, mode='tensor')
