# CvT-13 pre-training on ImageNet-22k (21,841 classes) at 224x224. The paper
# trains on ImageNet-22k with the ImageNet-1k recipe (Sec. 4.1), so this is
# cvt-13_imagenet.py with the 22k data set and head. Fine-tune with
# cvt-13_in21k-pre_in1k-384px.py or the configs in ../cvt_transfer/.
_base_ = [
    '../_base_/models/cvt-13.py',
    '../_base_/datasets/imagenet21k_cvt-randaug_224.py',
    '../_base_/schedules/cvt_imagenet_bs2048_adamw.py',
    '../_base_/default_runtime.py',
]

model = dict(head=dict(num_classes=21841))
train_dataloader = dict(batch_size=256)
