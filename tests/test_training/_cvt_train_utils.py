"""Helpers of the training tests: tiny data sets in the real on-disk layouts
mmpretrain 1.2 reads, config shrinking, and running tools/train.py."""
import os
import os.path as osp
import pickle
import subprocess
import sys
import uuid

import numpy as np
import torch
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(ROOT, 'configs')
PYTHON = sys.executable

# a 3-stage CvT small enough for 64x64 inputs on a CPU
TINY_ARCH = dict(
    embed_dims=[16, 32, 48],
    num_heads=[1, 2, 3],
    depths=[1, 1, 1],
    drop_path_rates=[0., 0., 0.1])
TINY_DIMS = TINY_ARCH['embed_dims'][-1]


# ---------------------------------------------------------------- images --


def _rand_image(rng, size=(48, 40)):
    arr = rng.randint(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr)


def write_imagenet(root, num_train=4, num_val=2, num_classes=2, seed=0):
    """ImageNet layout (mmpretrain ``ImageNet``, ``split='train'/'val'``):
    ``train/<wnid>/<wnid>_<i>.JPEG``, ``val/ILSVRC2012_val_<i>.JPEG`` and the
    annotation files ``meta/{train,val}.txt``."""
    rng = np.random.RandomState(seed)
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    wnids = [f'n{index:08d}' for index in range(num_classes)]
    lines = []
    for i in range(num_train):
        label = i % num_classes
        rel = f'{wnids[label]}/{wnids[label]}_{i}.JPEG'
        os.makedirs(osp.join(root, 'train', wnids[label]), exist_ok=True)
        _rand_image(rng).save(osp.join(root, 'train', rel), format='JPEG')
        lines.append(f'{rel} {label}')
    _write_lines(osp.join(root, 'meta', 'train.txt'), lines)
    lines = []
    os.makedirs(osp.join(root, 'val'), exist_ok=True)
    for i in range(num_val):
        rel = f'ILSVRC2012_val_{i + 1:08d}.JPEG'
        _rand_image(rng).save(osp.join(root, 'val', rel), format='JPEG')
        lines.append(f'{rel} {i % num_classes}')
    _write_lines(osp.join(root, 'meta', 'val.txt'), lines)
    return root


def write_imagenet21k(root, num_train=4, num_val=2, num_classes=2, seed=0):
    """ImageNet-21k layout (mmpretrain ``ImageNet21k`` with annotation files):
    ``{train,val}/<wnid>/<file>.JPEG`` + ``meta/{train,val}.txt``."""
    rng = np.random.RandomState(seed)
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    for split, num in (('train', num_train), ('val', num_val)):
        lines = []
        for i in range(num):
            label = i % num_classes
            wnid = f'n{label:08d}'
            rel = f'{wnid}/{wnid}_{i}.JPEG'
            os.makedirs(osp.join(root, split, wnid), exist_ok=True)
            _rand_image(rng).save(osp.join(root, split, rel), format='JPEG')
            lines.append(f'{rel} {label}')
        _write_lines(osp.join(root, 'meta', f'{split}.txt'), lines)
    return root


def _write_cifar_batch(path, data, labels, label_key):
    with open(path, 'wb') as f:
        pickle.dump({'data': data, label_key: list(labels)}, f)


def write_cifar(root, cifar100=False, num_train=4, num_val=2, seed=0):
    """The layout of the official python tarballs that mmpretrain's
    ``CIFAR10`` / ``CIFAR100`` unpack to: pickled dicts with a uint8
    ``data`` array of shape (N, 3072) (channel-major 32x32 RGB) and
    ``labels`` / ``fine_labels`` lists, plus the meta file of class names."""
    rng = np.random.RandomState(seed)
    if cifar100:
        folder, train_files, test_files = 'cifar-100-python', ['train'], [
            'test'
        ]
        meta_file, meta_key, label_key, n_cls = ('meta', 'fine_label_names',
                                                 'fine_labels', 100)
    else:
        folder = 'cifar-10-batches-py'
        train_files = [f'data_batch_{i}' for i in range(1, 6)]
        test_files = ['test_batch']
        meta_file, meta_key, label_key, n_cls = ('batches.meta',
                                                 'label_names', 'labels', 10)
    os.makedirs(osp.join(root, folder), exist_ok=True)

    def batch(n):
        return rng.randint(0, 256, size=(n, 3072), dtype=np.uint8), \
            [int(x) for x in rng.randint(0, n_cls, size=n)]

    # the training images are spread over the train files
    per_file = [num_train // len(train_files)] * len(train_files)
    per_file[0] += num_train - sum(per_file)
    for name, n in zip(train_files, per_file):
        data, labels = batch(n)
        _write_cifar_batch(osp.join(root, folder, name), data, labels,
                           label_key)
    for name in test_files:
        data, labels = batch(num_val)
        _write_cifar_batch(osp.join(root, folder, name), data, labels,
                           label_key)
    with open(osp.join(root, folder, meta_file), 'wb') as f:
        pickle.dump({meta_key: [f'class_{i}' for i in range(n_cls)]}, f)
    return root


def write_oxford_pets(root, num_train=4, num_val=2, seed=0):
    """Oxford-IIIT Pets: ``images/<Breed>_<i>.jpg`` and
    ``annotations/{trainval,test}.txt`` lines ``<image> <class id 1..37>
    <species> <breed id>``."""
    rng = np.random.RandomState(seed)
    os.makedirs(osp.join(root, 'images'), exist_ok=True)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    breeds = ['Abyssinian', 'american_bulldog', 'Bengal']
    index = 0
    for split, num in (('trainval', num_train), ('test', num_val)):
        lines = []
        for i in range(num):
            index += 1
            b = i % len(breeds)
            name = f'{breeds[b]}_{index}'
            _rand_image(rng).save(
                osp.join(root, 'images', name + '.jpg'), format='JPEG')
            species = 1 if breeds[b][0].isupper() else 2  # 1 cat, 2 dog
            lines.append(f'{name} {b + 1} {species} {b + 1}')
        _write_lines(osp.join(root, 'annotations', f'{split}.txt'), lines)
    return root


def write_flowers102(root, num_train=2, num_val=2, num_test=2, seed=0):
    """Oxford Flowers-102: ``jpg/image_%05d.jpg``, ``imagelabels.mat``
    (``labels``: 1 x N, 1-based) and ``setid.mat`` (``trnid``, ``valid``,
    ``tstid``: 1-based image ids)."""
    from scipy.io import savemat
    rng = np.random.RandomState(seed)
    os.makedirs(osp.join(root, 'jpg'), exist_ok=True)
    total = num_train + num_val + num_test
    for i in range(1, total + 1):
        _rand_image(rng).save(
            osp.join(root, 'jpg', f'image_{i:05d}.jpg'), format='JPEG')
    labels = np.array([[(i % 3) + 1 for i in range(total)]], dtype=np.uint8)
    savemat(osp.join(root, 'imagelabels.mat'), {'labels': labels})
    ids = np.arange(1, total + 1, dtype=np.uint16)
    savemat(
        osp.join(root, 'setid.mat'), {
            'trnid': ids[None, :num_train],
            'valid': ids[None, num_train:num_train + num_val],
            'tstid': ids[None, num_train + num_val:],
        })
    return root


def _write_lines(path, lines):
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


# ------------------------------------------------------- config shrinking --


def _scaled(value, factor):
    if isinstance(value, (tuple, list)):
        return type(value)(max(8, int(round(v * factor))) for v in value)
    return max(8, int(round(value * factor)))


def shrink_pipeline(pipeline, size):
    """The same transforms at ``size / base`` of their sizes, ``base`` being
    the training resolution of the pipeline (224 or 384)."""
    sizes = []
    for t in pipeline:
        for key in ('scale', 'crop_size'):
            v = t.get(key)
            if v is not None:
                sizes.append(max(v) if isinstance(v, (tuple, list)) else v)
    base = 384 if 384 in sizes else 224
    out = []
    for t in pipeline:
        t = dict(t)
        for key in ('scale', 'crop_size'):
            if t.get(key) is not None:
                t[key] = _scaled(t[key], size / base)
        out.append(t)
    return out


def shrink_config(cfg, work_dir, data_root, size=64, batch_size=2,
                  workers=0):
    """Tiny model, ``size``-pixel images, tiny batches, no worker processes;
    everything else (transforms, losses, augments, optimizer, schedule,
    hooks) stays as configured."""
    cfg.work_dir = work_dir
    cfg.experiment_name = f'test_{uuid.uuid4().hex[:8]}'
    backbone = cfg.model.backbone
    backbone.arch = dict(TINY_ARCH)
    backbone.img_size = size
    cfg.model.head.in_channels = TINY_DIMS
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(name)
        if loader is None:
            continue
        loader.batch_size = batch_size
        loader.num_workers = workers
        loader.persistent_workers = workers > 0
        loader.pop('pin_memory', None)
        loader.dataset.data_root = data_root
        loader.dataset.pipeline = shrink_pipeline(loader.dataset.pipeline,
                                                  size)
    cfg.default_hooks.logger.interval = 1
    cfg.env_cfg.dist_cfg = dict(backend='gloo')
    cfg.randomness = dict(seed=0)
    return cfg


def save_tiny_backbone_checkpoint(path, value=0.125):
    """A classifier checkpoint (mmpretrain layout) with the tiny backbone,
    whose stage-0 token-embedding weights are all ``value`` (a marker the
    fine-tuning test looks for), and a 5-class head."""
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    import mmcvt  # noqa: F401
    init_default_scope('mmpretrain')
    model = MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(
                type='mmcvt.CvT', arch=dict(TINY_ARCH), out_type='cls_token'),
            head=dict(
                type='LinearClsHead', num_classes=5,
                in_channels=TINY_DIMS)))
    state = model.state_dict()
    state['backbone.stages.0.patch_embed.proj.weight'].fill_(value)
    torch.save({'state_dict': state, 'meta': {}}, path)
    return path


# ------------------------------------------------------------ subprocesses --


def run_tool(args, cwd=ROOT, timeout=600, env=None):
    """Run a repository script (``tools/...``) and fail with its output."""
    full_env = dict(os.environ)
    full_env['PYTHONPATH'] = os.pathsep.join(
        p for p in (ROOT, osp.dirname(osp.abspath(__file__)),
                    full_env.get('PYTHONPATH')) if p)
    # one thread per process, sleeping (not spinning) when idle: the runs
    # share 2 cores with each other and with whatever else runs
    full_env.setdefault('OMP_NUM_THREADS', '1')
    full_env.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
    full_env['PYTHON'] = PYTHON
    if env:
        full_env.update(env)
    proc = subprocess.run(
        args,
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f'{" ".join(args)} failed '
                             f'({proc.returncode}):\n{proc.stdout[-6000:]}')
    return proc.stdout


def load_state(path):
    ckpt = torch.load(path, map_location='cpu', weights_only=False)
    return ckpt.get('state_dict', ckpt)


def max_abs_diff(a, b):
    assert a.keys() == b.keys()
    diffs = {
        k: (a[k].double() - b[k].double()).abs().max().item()
        for k in a if a[k].is_floating_point()
    }
    worst = max(diffs, key=diffs.get)
    return diffs[worst], worst
