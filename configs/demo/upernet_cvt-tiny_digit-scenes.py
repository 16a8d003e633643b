# UperNet on scenes of handwritten digits, starting from the digits
# classifier of the demo: the project's CvT-13 UperNet config
# (../cvt_seg/cvt-13-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py, mmseg's
# Swin-T recipe) shrunk in arch width (the demo's tiny CvT, heads 8x
# narrower), image size (128x128 crops of scenes of at most 224x160) and
# schedule, with a Lovasz-softmax term in the loss (below). 11 classes:
# background and the digits 0-9. Data (no download):
#   python tools/dataset_converters/prepare_digit_scenes.py
# Results, the controls (from scratch, frozen at random init) and what each
# change measured: README.md.
_base_ = [
    '../cvt_seg/cvt-13-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',
    '../_base_/models/cvt-tiny_digits.py'
]

crop_size = (128, 128)
num_classes = 11
model = dict(
    # the classifier's pixel normalisation
    data_preprocessor=dict(
        mean=_base_.digits_mean, std=_base_.digits_std, size=crop_size),
    # the classifier's backbone, loaded as ImageNet weights are (the head of
    # the classification checkpoint is left out)
    backbone=dict(
        _base_.cvt_backbone,
        **_base_.tiny_cvt,
        _delete_=True,
        norm_eval=False,
        init_cfg=dict(type='Pretrained',
                      checkpoint=_base_.digits_classifier)),
    # Heads at PyTorch's default initialisation, not mmseg's (the classifier
    # conv drawn with std 0.01): with that one, UperNet from scratch stays
    # at "all background" on these scenes for all 1,000 iterations (mIoU
    # 8.4; background is 93% of the validation pixels), with this one it
    # reaches 16.1 (measured with cross-entropy alone, 1,000 iterations;
    # configs/demo/README.md). The same choice for the pretrained start and
    # the controls.
    # Cross-entropy plus the Lovasz-softmax loss (Berman et al. 2018), a
    # surrogate of the per-class IoU that weighs every digit class as much
    # as the background (93% of the pixels): at 500 iterations mIoU 37.3
    # with it, 18.1 without, in 1,000-iteration runs (configs/demo/README.md).
    decode_head=dict(
        in_channels=[32, 64, 128],
        channels=64,
        num_classes=num_classes,
        loss_decode=[
            dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            dict(type='LovaszLoss', reduction='none', loss_weight=1.0)
        ],
        init_cfg=None),
    auxiliary_head=dict(
        in_channels=128, channels=32, num_classes=num_classes,
        init_cfg=None))

# data: 800 training / 100 validation scenes (96-160 x 128-224 pixels, 2-5
# digits of 20-48 pixels each); label maps 0 = background, 1 + digit
dataset_type = 'BaseSegDataset'
data_root = 'data/digit_scenes/'
metainfo = dict(
    classes=('background', ) + tuple(str(d) for d in range(10)),
    palette=[[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25],
             [0, 130, 200], [245, 130, 48], [145, 30, 180], [70, 240, 240],
             [240, 50, 230], [210, 245, 60], [250, 190, 212]])
scale = (224, 160)  # the recipe's (2048, 512), shrunk with the scenes
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),  # 0 is a class here, not "ignore"
    # the range of the three test scales (the recipe's is 0.5-2.0)
    dict(
        type='RandomResize',
        scale=scale,
        ratio_range=(0.75, 1.5),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    # no flip: a mirrored digit is not a digit
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
dataset = dict(
    _delete_=True,
    type=dataset_type,
    data_root=data_root,
    metainfo=metainfo,
    img_suffix='.png',
    seg_map_suffix='.png')
train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(
        dataset,
        data_prefix=dict(
            img_path='images/train', seg_map_path='seg_maps/train'),
        pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=1,
    dataset=dict(
        dataset,
        data_prefix=dict(img_path='images/val', seg_map_path='seg_maps/val'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

# schedule: the recipe's AdamW, warm-up and poly decay, over 1,000
# iterations of 8 crops; validated every 250 (the curves)
max_iters = 1000
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
         end=50),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=50, end=max_iters,
         by_epoch=False)
]
train_cfg = dict(max_iters=max_iters, val_interval=250)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
env_cfg = dict(cudnn_benchmark=False)
randomness = dict(seed=0)
auto_scale_lr = dict(base_batch_size=8)
