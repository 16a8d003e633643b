# The tiny CvT of the digits demos, shared by the classifier
# (configs/demo/cvt-tiny_digits.py) and the detector and segmenter that start
# from it (configs/demo/*_digit-scenes*.py). Like cvt-13_dense.py this file
# sets only variables, so that it can be listed next to a toolkit recipe.
# CvT-13's layer layout at toy width: a 7x7 stride-4 convolutional token
# embedding, then 3x3 stride-2 ones (token grids at strides 4, 8, 16, as the
# det / seg necks expect), widths 32/64/128, 1/2/4 heads, depths 1/1/2.
tiny_cvt = dict(
    arch=dict(
        embed_dims=[32, 64, 128],
        num_heads=[1, 2, 4],
        depths=[1, 1, 2],
        drop_path_rates=[0., 0., 0.1]),
    patch_sizes=(7, 3, 3),
    patch_strides=(4, 2, 2),
    patch_paddings=(2, 1, 1))

# pixel normalisation of the classifier, kept by the dense jobs
digits_mean = [127.5] * 3
digits_std = [127.5] * 3

# where `bash tools/demo.sh cls` leaves the classifier (the last epoch of
# 20); the dense demos load its backbone from here
digits_classifier = 'work_dirs/cvt-tiny_digits/epoch_20.pth'
