"""tools/analysis/check_dataset.py on the demo's scene data (written small by
its converter), clean and with the faults users meet: an empty and a
corrupt image, a box of negative width, an annotation of an unknown
category, a COCO file without its "images" key, an image without
annotations; with the detection and the segmentation configs."""
import json
import os.path as osp

import pytest

from .tool_module import load_tool

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DET = osp.join(ROOT, 'configs/demo/mask-rcnn_cvt-tiny_fpn_digit-scenes.py')
SEG = osp.join(ROOT, 'configs/demo/upernet_cvt-tiny_digit-scenes.py')


@pytest.fixture
def scenes(tmp_path):
    out = str(tmp_path / 'scenes')
    converter = load_tool('dataset_converters', 'prepare_digit_scenes.py')
    assert converter.main(['--out', out, '--num-train', '4', '--num-val',
                           '3']) == 0
    return out


def _check(config, root, *args):
    options = [f'{s}_dataloader.dataset.data_root={root}/'
               for s in ('train', 'val', 'test')]
    return load_tool('analysis', 'check_dataset.py').main(
        [config, *args, '--cfg-options', *options])


@pytest.mark.parametrize('config', [DET, SEG])
def test_clean_data_passes(scenes, capsys, config):
    assert _check(config, scenes) == 0
    out = capsys.readouterr().out
    assert 'train: ' in out and out.strip().endswith('OK')


def test_faults_are_counted_and_named(scenes, capsys):
    open(osp.join(scenes, 'images/train/00001.png'), 'wb').close()
    with open(osp.join(scenes, 'images/train/00002.png'), 'wb') as f:
        f.write(b'not a png at all')
    ann_file = osp.join(scenes, 'annotations/instances_train.json')
    with open(ann_file) as f:
        coco = json.load(f)
    coco['annotations'][0]['bbox'][2] = -5.0
    coco['annotations'][1]['category_id'] = 99
    coco['annotations'] = [a for a in coco['annotations']
                           if a['image_id'] != 4 or a['id'] <= 1]
    with open(ann_file, 'w') as f:
        json.dump(coco, f)
    assert _check(DET, scenes, '--splits', 'train') == 1
    out = capsys.readouterr().out
    assert 'error: 2 unreadable images' in out
    assert 'images/train/00001.png: empty (0 bytes)' in out
    assert 'images/train/00002.png: not a readable image (16 bytes)' in out
    assert 'error: 1 annotations of unknown categories (dropped)' in out
    assert 'category_id 99' in out
    assert 'error: 1 boxes of no width or height (dropped)' in out
    assert 'note: 1 images without annotations' in out and '00003.png' in out
    assert out.strip().endswith('FAILED')


def test_a_coco_file_without_images_names_the_key(scenes, capsys):
    ann_file = osp.join(scenes, 'annotations/instances_val.json')
    with open(ann_file) as f:
        coco = json.load(f)
    del coco['images']
    with open(ann_file, 'w') as f:
        json.dump(coco, f)
    assert _check(DET, scenes, '--splits', 'val') == 1
    out = capsys.readouterr().out
    assert f'{ann_file} has no top-level images key' in out


def test_seg_maps_are_checked(scenes, capsys):
    open(osp.join(scenes, 'seg_maps/val/00000.png'), 'wb').close()
    assert _check(SEG, scenes, '--splits', 'val') == 1
    assert 'seg_maps/val/00000.png: empty (0 bytes)' in capsys.readouterr().out
