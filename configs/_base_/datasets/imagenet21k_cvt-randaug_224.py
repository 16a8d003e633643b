# ImageNet-22k (mmpretrain `ImageNet21k`, 21,841 classes) at 224x224 with the
# same augmentation as ImageNet-1k (imagenet_cvt-randaug_224.py), for every
# variant.
# Expected layout: data/imagenet21k/{train,val}/<wnid>/*.JPEG with
# meta/{train,val}.txt ("<wnid>/<file> <label>") annotation files; giving the
# annotation files avoids scanning ~14M files at start-up.
_base_ = './imagenet_cvt-randaug_224.py'

dataset_type = 'ImageNet21k'
data_preprocessor = dict(num_classes=21841)

train_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        data_root='data/imagenet21k',
        split='',
        ann_file='meta/train.txt',
        data_prefix='train'))
val_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        data_root='data/imagenet21k',
        split='',
        ann_file='meta/val.txt',
        data_prefix='val'))
test_dataloader = val_dataloader
