# The demo segmenters' schedule on the digit scenes (variables only, as
# digit-scenes_det_3e.py): 1,000 iterations of 8 crops, a 50-iteration
# warm-up then the recipes' poly decay; validated every 250 (the curves).
digit_scenes_seg_max_iters = 1000
digit_scenes_seg_param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
         end=50),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=50,
         end=digit_scenes_seg_max_iters, by_epoch=False)
]
digit_scenes_seg_train_cfg = dict(
    max_iters=digit_scenes_seg_max_iters, val_interval=250)
digit_scenes_seg_default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(
        interval=digit_scenes_seg_max_iters, max_keep_ckpts=1,
        save_best=None))
