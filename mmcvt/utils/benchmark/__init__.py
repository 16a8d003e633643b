# Copyright (c) mmcvt contributors. All rights reserved.
"""Speed / memory benchmark of mmcvt's CvT against the HuggingFace reference.

One run measures, on the SAME weights (a seeded, randomly initialised
``transformers.CvtForImageClassification`` whose state dict is converted with
``convert_hf_to_mmcvt`` and loaded into mmcvt), for every requested
implementation x arch x input size x mode:

* throughput (images/s; median over ``--repeats`` timed iterations after
  ``--warmup`` untimed ones, min and max reported too),
* peak memory of one iteration (see "Peak memory" below),
* multiply-accumulates per image (``torch.utils.flop_counter.FlopCounterMode``
  / 2: convolutions, linears / matmuls and attention) and the achieved MAC
  rate, against the machine's own large-matmul rate measured in the same run.

Modes: ``infer`` (eval mode, ``torch.inference_mode``) and ``train`` (one
full step: ``zero_grad`` + forward + cross entropy + backward + ``AdamW``
step). Under ``--dtype bf16 / fp16`` the forward (and loss) runs in
``torch.autocast``; the weights stay fp32 (mixed precision); fp16 training
uses a ``GradScaler``.

Implementations (``--impls``):

* ``hf``            transformers ``CvtForImageClassification`` (the reference,
                    exact GELU, as shipped)
* ``mmcvt``         ``mmcvt.CvT`` backbone (``out_type='cls_token'``) plus a
                    linear head (``head.fc``), i.e. the mmpretrain classifier
* ``mmcvt-deploy``  the same after ``switch_to_deploy()`` (BN folded into the
                    depth-wise convs; inference only)
* ``mmcvt-compile`` ``torch.compile`` of ``mmcvt`` (compile time is spent in
                    the warm-up)
* ``mmcvt-reference`` ``mmcvt`` with ``set_fused(False)``: the official
                    formulation step by step (explicit softmax attention,
                    QuickGELU, conv + BN), i.e. what the fast paths gain
* ``mmcvt-cp``      ``mmcvt`` with activation checkpointing per block
                    (``with_cp=True``): training memory for a second forward
* ``IMPL@DTYPE``     any of them pinned to a dtype, e.g. ``mmcvt@fp32`` in a
                    ``--dtype bf16`` run: both dtypes timed round-robin in
                    one run, the ratio printed under the table
                    (``vs_dtype`` in the JSON)
* ``--impl-extra [NAME=]module:callable`` any other model; the callable gets
  the keyword arguments it accepts out of ``arch``, ``img_size``,
  ``num_classes``, ``hf_state_dict``, ``hf_config`` and ``device`` and returns
  an ``nn.Module`` mapping images ``(B, 3, S, S)`` to logits (or to anything
  whose tensors give a loss). :mod:`.revision` has two: mmcvt's CvT at
  another git revision (``MMCVT_BENCH_REV``), to time a change against it.

Peak memory:

``peak_delta_mb`` is the peak *increase* of allocated tensor memory during
one iteration (activations, temporaries, new gradients); ``peak_mb`` adds
the bytes of the model's tensors live at its start (parameters, buffers,
optimizer state, inputs; the previous gradients are released first, as the
step's ``zero_grad(set_to_none=True)`` does):

* CUDA: ``torch.cuda.max_memory_allocated()`` after
  ``reset_peak_memory_stats()``, minus ``memory_allocated()`` at the start.
* CPU: the PyTorch profiler's memory accounting (``profile_memory=True``):
  every allocation / free of the CPU tensor allocator during the iteration
  is recorded, the running sum's maximum is the peak increase. This counts
  tensor memory only (no allocator caching / fragmentation, no
  library-internal scratch that bypasses the PyTorch allocator), not RSS.

By default the implementations of one arch x size x mode are built
together and timed round-robin (fairer on a shared machine);
``--sequential`` builds and measures one at a time (less memory).

Input sizes are ``S`` (square) or ``HxW`` (``--sizes 224 512 800x1333``).
``--task dense`` measures the backbones alone as detection and segmentation
run them: every stage's map out (mmcvt ``out_type='featmap'``,
transformers ``CvtModel`` hidden states), the training loss the sum of
their means; with several sizes a second table gives how time, peak memory
and MACs grow with the input area.

Examples::

    # the issue's goal setting (CPU, fp32, CvT-13 at 224, batch 32)
    python tools/analysis/benchmark.py --archs 13 --sizes 224 \
        --batch-size 32 --impls mmcvt hf --json work_dirs/bench.json
    # the full matrix on a GPU under bf16 autocast
    python tools/analysis/benchmark.py --device cuda --dtype bf16 \
        --archs 13 21 w24 --sizes 224 384 \
        --impls mmcvt mmcvt-deploy mmcvt-compile hf --json bench.json
    # dense-sized inputs: the backbones at detection / segmentation sizes
    python tools/analysis/benchmark.py --task dense --archs 13 \
        --sizes 224 512 800x1333 --batch-size 1 --sequential
"""
from .cli import main, parse_args
from .impls import build_hf, build_mmcvt, swap_quick_gelu

__all__ = ['main', 'parse_args', 'build_hf', 'build_mmcvt', 'swap_quick_gelu']
