"""tools/dataset_converters/prepare_digit_scenes.py: valid COCO and
label-map data, deterministic, idempotent, readable by mmdet and mmseg."""
import hashlib
import json
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from .tool_module import load_tool

SMALL = ['--num-train', '6', '--num-val', '3']


def _run(out, *extra):
    tool = load_tool('dataset_converters', 'prepare_digit_scenes.py')
    return tool.main(['--out', str(out), *SMALL, *extra])


def _hashes(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = osp.join(d, f)
            with open(p, 'rb') as fh:
                out[osp.relpath(p, root)] = hashlib.sha256(
                    fh.read()).hexdigest()
    return out


@pytest.fixture(scope='module')
def scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp('scenes') / 'digit_scenes'
    _run(out)
    return out


def test_coco_instances_are_valid(scenes):
    from pycocotools.coco import COCO
    for split, n in (('train', 6), ('val', 3)):
        coco = COCO(str(scenes / 'annotations' / f'instances_{split}.json'))
        assert len(coco.getImgIds()) == n
        assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == [
            str(d) for d in range(10)
        ]
        assert len(coco.getAnnIds()) >= 2 * n  # at least 2 digits a scene
        for ann in coco.loadAnns(coco.getAnnIds()):
            img = coco.loadImgs(ann['image_id'])[0]
            w, h = Image.open(scenes / 'images' / split /
                              img['file_name']).size
            assert (img['width'], img['height']) == (w, h)
            mask = coco.annToMask(ann).astype(bool)
            ys, xs = np.nonzero(mask)
            x, y, bw, bh = ann['bbox']
            # the mask spans its box exactly, with the area it states
            assert (xs.min(), ys.min()) == (x, y)
            assert (xs.max() + 1, ys.max() + 1) == (x + bw, y + bh)
            assert mask.sum() == ann['area']
            # and the label map holds the same digit on exactly those pixels
            seg = np.asarray(
                Image.open(scenes / 'seg_maps' / split / img['file_name']))
            assert (seg[mask] == ann['category_id']).all()


def test_scenes_are_not_trivial(scenes):
    img = np.asarray(Image.open(scenes / 'images' / 'train' / '00000.png'))
    seg = np.asarray(Image.open(scenes / 'seg_maps' / 'train' / '00000.png'))
    assert img.shape[:2] == seg.shape
    background = img[seg == 0].astype(float)
    assert background.std() > 20  # textured and noisy, not a flat canvas
    shapes = {
        Image.open(scenes / 'images' / 'train' / f).size
        for f in os.listdir(scenes / 'images' / 'train')
    }
    assert len(shapes) > 1 and any(w != h for w, h in shapes)


def test_train_and_val_use_different_scans():
    from sklearn.datasets import load_digits
    tool = load_tool('dataset_converters', 'prepare_digit_scenes.py')
    split = tool.split_digits(load_digits().target, seed=0)
    assert not set(split['train']) & set(split['val'])
    assert len(split['train']) + len(split['val']) == 1797


def test_deterministic_and_idempotent(scenes, tmp_path):
    again = tmp_path / 'again'
    _run(again)
    assert _hashes(again) == _hashes(scenes)
    stamp = again / 'meta' / 'settings.json'
    mtime = os.path.getmtime(stamp)
    _run(again)  # same settings: reused
    assert os.path.getmtime(stamp) == mtime
    _run(again, '--seed', '1')  # other settings: rewritten
    with open(stamp) as f:
        assert json.load(f)['seed'] == 1
    assert _hashes(again) != _hashes(scenes)


def test_toolkits_read_it(scenes):
    from mmdet.datasets import CocoDataset
    from mmseg.datasets import BaseSegDataset
    classes = tuple(str(d) for d in range(10))
    det = CocoDataset(
        data_root=str(scenes),
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='images/val/'),
        metainfo=dict(classes=classes),
        pipeline=[])
    assert len(det) == 3 and det[0]['instances']
    # mmdet's own loading turns the RLE masks into the strokes
    from mmcv.transforms import LoadImageFromFile
    from mmdet.datasets.transforms import LoadAnnotations
    item = LoadAnnotations(with_mask=True)(LoadImageFromFile()(det[0]))
    masks = item['gt_masks'].to_ndarray()
    seg_map = np.asarray(
        Image.open(scenes / 'seg_maps' / 'val' / '00000.png'))
    assert masks.shape[1:] == seg_map.shape
    np.testing.assert_array_equal(masks.any(0), seg_map > 0)
    seg = BaseSegDataset(
        data_root=str(scenes),
        data_prefix=dict(img_path='images/val', seg_map_path='seg_maps/val'),
        img_suffix='.png',
        seg_map_suffix='.png',
        metainfo=dict(classes=('background', ) + classes),
        pipeline=[])
    assert len(seg) == 3 and seg[0]['seg_map_path'].endswith('00000.png')


def test_bad_arguments_are_refused(tmp_path):
    tool = load_tool('dataset_converters', 'prepare_digit_scenes.py')
    with pytest.raises(SystemExit):
        tool.parse_args(['--digit-size', '50', '200'])


def test_scans_are_split_as_for_the_classifier():
    """The validation scenes use only the scans that the digits classifier
    holds out (prepare_digits.py, same seed): its weights, the dense demos'
    start, have never seen a validation digit."""
    from sklearn.datasets import load_digits
    labels = load_digits().target
    scenes = load_tool('dataset_converters', 'prepare_digit_scenes.py')
    digits = load_tool('dataset_converters', 'prepare_digits.py')
    for seed in (0, 3):
        ours = scenes.split_digits(labels, seed)
        theirs = digits.split_indices(labels, 0.2, seed)
        assert ours['train'].tolist() == theirs['train']
        assert ours['val'].tolist() == theirs['val']
