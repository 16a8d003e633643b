# Copyright (c) mmcvt contributors. All rights reserved.
"""A data set that is not where a config expects it: one message that says
which data set, where the config looks, its layout, how to point the config
elsewhere and where the docs describe preparing it (instead of the
toolkit's traceback from deep inside the dataset class).

Entry point: :func:`check_data_roots` (``mmcvt.cli.build_runner`` calls it).
"""
import os.path as osp
from typing import Iterator, Sequence, Tuple

__all__ = ['DataNotFoundError', 'check_data_roots', 'DATASETS']

# dataset type -> (name, layout under data_root, the docs that prepare it)
DATASETS = {
    'ImageNet': ('ImageNet-1k', '{train,val}/<class>/*.JPEG, and the lists '
                 'meta/{train,val}.txt ("<class>/<file> <label>")',
                 'configs/cvt/README.md'),
    'ImageNet21k': ('ImageNet-22k', '{train,val}/<class>/*.JPEG and '
                    'meta/{train,val}.txt', 'configs/cvt/README.md'),
    'CIFAR10': ('CIFAR-10', 'cifar-10-batches-py/{data_batch_1..5,'
                'test_batch,batches.meta}', 'configs/cvt_transfer/README.md'),
    'CIFAR100': ('CIFAR-100', 'cifar-100-python/{train,test,meta}',
                 'configs/cvt_transfer/README.md'),
    'OxfordIIITPet': ('Oxford-IIIT Pets', 'annotations/{trainval,test}.txt '
                      'and images/*.jpg', 'configs/cvt_transfer/README.md'),
    'Flowers102': ('Oxford Flowers-102', 'imagelabels.mat, setid.mat and '
                   'jpg/image_*.jpg', 'configs/cvt_transfer/README.md'),
    'CocoDataset': ('COCO 2017', '{train2017,val2017}/*.jpg and '
                    'annotations/instances_{train,val}2017.json',
                    'configs/cvt_det/README.md'),
    'ADE20KDataset': ('ADE20K', '{images,annotations}/{training,validation}',
                      'configs/cvt_seg/README.md'),
    'CustomDataset': ('image-folder', '<split>/<class>/<image> (the demo: '
                      'python tools/dataset_converters/prepare_digits.py)',
                      'configs/demo/README.md'),
}
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


class DataNotFoundError(FileNotFoundError):
    """A config's data set is not on disk."""


def _datasets(cfg, path: str) -> Iterator[Tuple[str, dict]]:
    """``(config path, dataset dict)`` of a loader's dataset, through
    wrappers (``RepeatDataset``, ``ConcatDataset``, ...)."""
    if not isinstance(cfg, dict):
        return
    if 'data_root' in cfg:
        yield path, cfg
    if isinstance(cfg.get('dataset'), dict):
        yield from _datasets(cfg['dataset'], path + '.dataset')
    for i, sub in enumerate(cfg.get('datasets') or []):
        yield from _datasets(sub, f'{path}.datasets.{i}')


def check_data_roots(cfg, config_file: str = 'the config',
                     loaders: Sequence[str] = LOADERS) -> None:
    """Raise :class:`DataNotFoundError` if the ``data_root`` of one of the
    ``loaders`` (the ones a run uses) is not on disk (a data set with a
    ``data_root`` of its own; others are left to their toolkit)."""
    for loader in loaders:
        if not cfg.get(loader):
            continue
        for path, ds in _datasets(cfg[loader].get('dataset'),
                                  f'{loader}.dataset'):
            root = ds.get('data_root')
            kind = str(ds.get('type', '')).split('.')[-1]
            # mmpretrain's CIFAR downloads itself where it may
            downloads = ds.get('download', kind in ('CIFAR10', 'CIFAR100'))
            if (not root or '://' in str(root) or osp.exists(root)
                    or downloads):
                continue
            name, layout, docs = DATASETS.get(
                kind, (kind or 'data', None, None))
            loaders = [n for n in LOADERS if cfg.get(n) and
                       any(d.get('data_root') == root
                           for _, d in _datasets(cfg[n].get('dataset'), ''))]
            options = ' '.join(
                f'{n}.dataset.data_root=/path/to/it' for n in loaders
            ) if path == f'{loader}.dataset' else f'{path}.data_root=...'
            raise DataNotFoundError(
                f'The {name} data set is not where {config_file} expects it: '
                f'{root} ({osp.abspath(root)}) does not exist. '
                + (f'Expected layout there: {layout}. ' if layout else '')
                + f'Put it there (a link will do), or point the config at '
                f'it: --cfg-options {options}.'
                + (f' {docs} describes preparing it.' if docs else ''))


# --- the whole data set: tools/analysis/check_dataset.py ---------------------


def _coco_problems(ann_file: str) -> dict:
    """What mmdet's COCO loading drops or chokes on, read from the file
    itself: missing top-level keys (an error), annotations of unknown
    categories, of unknown images or with boxes of no width or height
    (dropped in silence), images without annotations."""
    import json
    with open(ann_file) as f:
        coco = json.load(f)
    missing = [k for k in ('images', 'annotations', 'categories')
               if k not in coco]
    if missing:
        raise KeyError(
            f'{ann_file} has no top-level {" / ".join(missing)} key: a COCO '
            f'instances file holds "images", "annotations" and "categories".')
    cats = {c['id'] for c in coco['categories']}
    images = {im['id']: im.get('file_name', str(im['id']))
              for im in coco['images']}
    problems = dict(unknown_category=[], unknown_image=[], bad_box=[])
    annotated = set()
    for ann in coco['annotations']:
        where = (f"annotation {ann.get('id')} of "
                 f"{images.get(ann.get('image_id'), ann.get('image_id'))}")
        if ann.get('category_id') not in cats:
            problems['unknown_category'].append(
                f"{where}: category_id {ann.get('category_id')}")
        elif ann.get('image_id') not in images:
            problems['unknown_image'].append(where)
        else:
            x, y, w, h = (ann.get('bbox') or [0, 0, 0, 0])[:4]
            if w < 1 or h < 1 or ann.get('area', 1) <= 0:
                problems['bad_box'].append(f'{where}: bbox {ann.get("bbox")}')
            else:
                annotated.add(ann['image_id'])
    problems['empty_image'] = [name for i, name in images.items()
                               if i not in annotated]
    problems['counts'] = dict(images=len(images),
                              annotations=len(coco['annotations']))
    return problems


def _read_problem(path: str, decode: bool) -> str:
    """Why the file at ``path`` cannot be used as an image, or ''."""
    if not osp.isfile(path):
        return 'no such file'
    if osp.getsize(path) == 0:
        return 'empty (0 bytes)'
    if decode:
        import cv2
        import numpy as np
        with open(path, 'rb') as f:
            buf = np.frombuffer(f.read(), np.uint8)
        if cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) is None:
            return f'not a readable image ({osp.getsize(path):,} bytes)'
    return ''


def check_dataset(cfg, loader: str, decode: bool = True) -> dict:
    """Check the data set of ``cfg[loader]`` with its toolkit's own dataset
    class: every image (and segmentation map) there, non-empty and
    decodable, and, for COCO files, what loading drops.

    Returns:
        dict: ``counts``, and per problem the names of the files or
        annotations (``unreadable``, ``unknown_category``,
        ``unknown_image``, ``bad_box``: errors; ``empty_image``:
        information).
    """
    from mmengine.registry import DATASETS, DefaultScope
    report = dict(counts={}, unreadable=[])
    for path, ds in _datasets(cfg[loader].get('dataset'), loader):
        if ds.get('ann_file', '').endswith('.json'):
            ann = osp.join(ds.get('data_root') or '', ds['ann_file'])
            for k, v in _coco_problems(ann).items():
                if k == 'counts':
                    report['counts'].update(v)
                else:
                    report.setdefault(k, []).extend(v)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        dataset = DATASETS.build(cfg[loader]['dataset'])
    if hasattr(dataset, 'full_init'):  # a lazily initialised dataset
        dataset.full_init()
    report['counts']['samples'] = len(dataset)
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        for key in ('img_path', 'seg_map_path'):
            if info.get(key):
                why = _read_problem(info[key], decode)
                if why:
                    report['unreadable'].append(f'{info[key]}: {why}')
    return report


ERRORS = ('unreadable', 'unknown_category', 'unknown_image', 'bad_box')
