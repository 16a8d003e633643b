# Transfer family base: CIFAR-10, fine-tuned at 384x384 from ImageNet-22k
# pre-training, SGD momentum 0.9, total batch 512 (8 GPUs x 64), 10,000
# iterations (CvT paper, Sec. 4.1 / Table 4). The per-model files add the
# model (../../_base_/models/cvt-*_ft.py) and the number of classes.
_base_ = [
    '../../_base_/datasets/cifar10_bs64_cvt-ft_384.py',
    '../../_base_/schedules/cvt_finetune_sgd_bs512_10k.py',
    '../../_base_/default_runtime_iter.py',
]
