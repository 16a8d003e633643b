# cvt-13_in21k-pre_cifar10-384px.py with layer-wise learning-rate decay:
# mmpretrain's LearningRateDecayOptimWrapperConstructor scales each
# parameter's lr by layer_decay_rate ** (depth from the top), using
# CvT.get_layer_depth (blocks of the three stages in order, embeddings
# lowest, head highest). The CvT paper fine-tunes without it; 0.75 is the
# value of mmpretrain's documentation example, not a tuned one. Norms, biases,
# class token and position embeddings keep no weight decay (the base
# recipe has none at all).
_base_ = './cvt-13_in21k-pre_cifar10-384px.py'

optim_wrapper = dict(
    constructor='LearningRateDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.75,
        norm_decay_mult=0.,
        bias_decay_mult=0.,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
        }))
