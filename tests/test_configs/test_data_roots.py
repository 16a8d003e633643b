"""A shipped config run where its data set is not (yet) in place: one
message naming the data set, where the config looks, its layout, the
--cfg-options that point elsewhere and the docs that prepare it, for every
config family (instead of a traceback from inside the dataset class)."""
import os
import os.path as osp
import subprocess
import sys

import pytest
from mmengine.config import Config

import mmcvt  # noqa: F401
from mmcvt.utils.data_check import DataNotFoundError, check_data_roots

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.mark.parametrize('config, name, root, docs', [
    ('cvt/cvt-13_imagenet.py', 'ImageNet-1k', 'data/imagenet',
     'configs/cvt/README.md'),
    ('cvt/cvt-13_in21k.py', 'ImageNet-22k', 'data/imagenet21k',
     'configs/cvt/README.md'),
    ('cvt_transfer/cvt-13_in21k-pre_oxford-pets-384px.py',
     'Oxford-IIIT Pets', 'data/Oxford-IIIT_Pets',
     'configs/cvt_transfer/README.md'),
    ('cvt_transfer/cvt-13_in21k-pre_flowers102-384px.py',
     'Oxford Flowers-102', 'data/flowers102',
     'configs/cvt_transfer/README.md'),
    ('cvt_det/mask-rcnn_cvt-13_fpn_ms-crop-3x_coco.py', 'COCO 2017',
     'data/coco/', 'configs/cvt_det/README.md'),
    ('cvt_seg/cvt-13-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py', 'ADE20K',
     'data/ade/ADEChallengeData2016', 'configs/cvt_seg/README.md'),
    ('demo/cvt-tiny_digits.py', 'image-folder', 'data/digits',
     'configs/demo/README.md'),
])
def test_missing_data_set_is_named(tmp_path, monkeypatch, config, name, root,
                                   docs):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', config))
    monkeypatch.chdir(tmp_path)  # no data/ here
    with pytest.raises(DataNotFoundError) as e:
        check_data_roots(cfg, config)
    msg = str(e.value)
    assert msg.startswith(f'The {name} data set is not where {config} '
                          f'expects it: {root} ({tmp_path / root}')
    assert 'Expected layout there:' in msg
    assert '--cfg-options train_dataloader.dataset.data_root=' in msg
    assert msg.endswith(f'{docs} describes preparing it.')
    # pointed elsewhere, it goes on
    os.makedirs(root)
    check_data_roots(cfg, config)


def test_cifar_downloads_itself():
    cfg = Config.fromfile(osp.join(
        ROOT, 'configs/cvt_transfer/cvt-13_in21k-pre_cifar10-384px.py'))
    check_data_roots(cfg)  # mmpretrain's CIFAR10 downloads where it may


def test_train_py_says_it_without_a_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools/train.py'),
         osp.join(ROOT, 'configs/cvt/cvt-21_imagenet.py')],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 1
    assert proc.stderr.startswith('train.py: error: The ImageNet-1k data set '
                                  'is not where')
    assert 'Traceback' not in proc.stderr


def test_only_the_loaders_a_run_uses(tmp_path, monkeypatch):
    """Testing needs the test set only: a missing training set is no error
    for tools/test.py (build_runner checks the test loader alone)."""
    cfg = Config.fromfile(osp.join(
        ROOT, 'configs/cvt_det/mask-rcnn_cvt-13_fpn_ms-crop-3x_coco.py'))
    monkeypatch.chdir(tmp_path)
    os.makedirs('test_only')
    cfg.test_dataloader.dataset.data_root = 'test_only'
    check_data_roots(cfg, loaders=('test_dataloader', ))
    with pytest.raises(DataNotFoundError, match='COCO 2017'):
        check_data_roots(cfg, loaders=('train_dataloader', ))
