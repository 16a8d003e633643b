"""A hook for the distributed-equivalence test: before and after training,
every rank saves its own copy of the model weights (``rank{r}_init.pth``,
``rank{r}.pth``; the checkpoint hook only saves rank 0's). Imported by the
training processes via ``custom_imports``."""
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module(force=True)
class DumpRankWeightsHook(Hook):
    priority = 'VERY_LOW'

    @staticmethod
    def _dump(runner, suffix: str) -> None:
        model = runner.model
        if is_model_wrapper(model):
            model = model.module
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save(state,
                   osp.join(runner.work_dir, f'rank{get_rank()}{suffix}.pth'))

    def before_train(self, runner) -> None:
        self._dump(runner, '_init')

    def after_train(self, runner) -> None:
        self._dump(runner, '')
