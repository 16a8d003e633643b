# The demo detectors' schedule on the digit scenes (variables only, as
# ../datasets/digit-scenes_instance.py): the recipes' AdamW and step decay
# over 3 epochs of 200 iterations (batch 4), a 50-iteration warm-up and one
# step before the last epoch; validated after every epoch (the curves).
digit_scenes_max_epochs = 3
digit_scenes_param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=50),
    dict(type='MultiStepLR', begin=0, end=digit_scenes_max_epochs,
         by_epoch=True, milestones=[2], gamma=0.1)
]
digit_scenes_train_cfg = dict(
    max_epochs=digit_scenes_max_epochs, val_interval=1)
digit_scenes_default_hooks = dict(
    logger=dict(interval=25),
    checkpoint=dict(interval=digit_scenes_max_epochs))
