# Fine-tuning schedule of the CvT paper (Sec. 4.1, "Fine-tuning"), which
# adopts ViT's: SGD with momentum 0.9, total batch 512, 20,000 iterations for
# ImageNet-1k (10,000 for CIFAR, 500 for Pets / Flowers: see the _10k / _500
# variants). The paper gives no learning rate; we use the official code's
# FINETUNE.BASE_LR default, 0.003 (also in ViT's sweep). As in ViT: no
# weight decay, gradient clipping at global norm 1, cosine decay after a
# linear warm-up of 500 iterations (vit_jax default; an assumption, the CvT
# paper does not state it).
lr = 0.003
max_iters = 20000
warmup_iters = 500

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=lr, momentum=0.9, weight_decay=0.),
    clip_grad=dict(max_norm=1.0),
)
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=False,
        begin=0,
        end=warmup_iters),
    dict(
        type='CosineAnnealingLR',
        eta_min=0.,
        by_epoch=False,
        begin=warmup_iters,
        end=max_iters),
]

train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=2000)
val_cfg = dict()
test_cfg = dict()

# lr above is for a total batch of 512 (8 GPUs x 64)
auto_scale_lr = dict(base_batch_size=512)
