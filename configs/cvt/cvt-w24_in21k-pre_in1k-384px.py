# CvT-W24 pre-trained on ImageNet-22k (cvt-w24_in21k.py), fine-tuned on
# ImageNet-1k at 384x384: SGD momentum 0.9, total batch 512 (8 GPUs x 64),
# 20,000 iterations (paper, Sec. 4.1). Official weights:
# CvT-w24-384x384-IN-22k.pth (87.7 top-1 in the paper, 87.6 in the
# official zoo).
_base_ = [
    '../_base_/models/cvt-w24_ft.py',
    '../_base_/datasets/imagenet_bs64_cvt-ft_384.py',
    '../_base_/schedules/cvt_finetune_sgd_bs512_20k.py',
    '../_base_/default_runtime_iter.py',
]
