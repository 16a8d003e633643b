# CvT-21 / CvT-W24 ImageNet schedule, as the official code ran it
# (experiments/imagenet/cvt/cvt-21-224x224.yaml): AdamW, per-GPU lr 1.25e-4
# scaled by the number of GPUs (lib/config/default.py: TRAIN.SCALE_LR
# multiplies TRAIN.LR by the world size), 8 GPUs x 128 = total batch 1024,
# so lr = 1e-3. The paper (Sec. 4.1) states lr 0.02 at batch 2048, which the
# released code does not use; we follow the code.
# Weight decay 0.1, not applied to norms (BN and LN), biases, the class token
# and position embeddings (TRAIN.WITHOUT_WD_LIST ['bn', 'bias', 'ln'] and
# the model's `no_weight_decay()`).
# Schedule (timm `cosine`): 300 epochs, 5 warm-up epochs rising linearly from
# 1e-6, then cosine to min lr 1e-5. timm's 10 cooldown epochs lie past the
# 300th epoch and are never run by the official trainer. timm steps per
# epoch and runs its cosine over epochs 0-300 (overlapping the warm-up, so
# it starts at 0.9986 x lr); we step per iteration (convert_to_iter_based)
# and run the cosine over epochs 5-300. Grad clipping: none.
lr = 1.25e-4 * 8
optim_wrapper = dict(
    optimizer=dict(
        type='AdamW',
        lr=lr,
        weight_decay=0.1,
        eps=1e-8,
        betas=(0.9, 0.999)),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
        }),
)

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-6 / lr,
        by_epoch=True,
        begin=0,
        end=5,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-5,
        by_epoch=True,
        begin=5,
        end=300,
        convert_to_iter_based=True),
]

train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# lr above is for a total batch of 1024; `--auto-scale-lr` rescales it
# linearly to the actual total batch (GPUs x samples per GPU).
auto_scale_lr = dict(base_batch_size=1024)
