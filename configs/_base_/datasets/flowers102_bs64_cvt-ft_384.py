# Oxford Flowers-102 transfer at 384x384, trained on `trainval` (train + val
# splits of setid.mat), evaluated on `test`. Transforms as Oxford-IIIT Pets.
_base_ = './oxford-pets_bs64_cvt-ft_384.py'

dataset_type = 'Flowers102'
data_preprocessor = dict(num_classes=102)
train_dataloader = dict(
    dataset=dict(type=dataset_type, data_root='data/flowers102'))
val_dataloader = dict(
    dataset=dict(type=dataset_type, data_root='data/flowers102'))
test_dataloader = val_dataloader
