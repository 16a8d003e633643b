"""Convert an official (microsoft/CvT) or HuggingFace CvT checkpoint to the
mmcvt / mmpretrain layout (``backbone.stages.*``, ``backbone.norm.*``,
``head.fc.*``).

    python tools/model_converters/cvt_to_mmcvt.py SRC DST [--arch 13]

SRC is a torch file (``.pth``/``.pt``/``.bin``; a bare state dict or one
wrapped as ``{'state_dict': ...}`` / ``{'model': ...}``). DST receives
``{'state_dict': converted, 'meta': {...}}``. The conversion logic lives in
``mmcvt/models/utils/ckpt_convert.py``.
"""
import argparse
import os.path as osp
import pickle
import sys

import torch

# runnable from a checkout without installing mmcvt
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

from mmcvt.compat import load_checkpoint_file  # noqa: E402
from mmcvt.models import CvT  # noqa: E402
from mmcvt.models.utils import (convert_checkpoint, detect_format,  # noqa
                                infer_arch, unwrap)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert an official or HuggingFace CvT checkpoint to '
        'the mmcvt (mmpretrain) layout.')
    parser.add_argument('src', help='official / HuggingFace checkpoint')
    parser.add_argument('dst', help='output .pth path')
    parser.add_argument(
        '--arch',
        default=None,
        help='expected variant (13, 21, w24); fail if the checkpoint is '
        'another one')
    return parser.parse_args(argv)


def _load(path):
    try:
        return load_checkpoint_file(path, map_location='cpu')
    except FileNotFoundError:
        raise ValueError(f'No such checkpoint file: {path}') from None
    except pickle.UnpicklingError as e:
        # a real checkpoint with Python objects the safe loader refuses
        raise ValueError(
            f'{path} holds Python objects besides tensors, which '
            'torch.load(weights_only=True) refuses; re-save its state '
            'dict alone (torch.save(ckpt["state_dict"], path)).') from e
    except ValueError as e:  # not a readable checkpoint at all
        raise ValueError(f'Cannot read {path}: corrupt or not a torch file. '
                         f'{e}') from e


def convert(src, dst, arch=None):
    """Convert ``src`` to ``dst``; returns ``(format, variant, converted)``.

    Raises:
        ValueError: Corrupt / unknown checkpoint, or not the ``arch``
            variant.
    """
    state_dict = unwrap(_load(src))
    fmt = detect_format(state_dict)
    converted = convert_checkpoint(state_dict, fmt)
    info = infer_arch(converted)
    name = CvT.variant_name(info['depths'], info['embed_dims'])
    looks = CvT.display_name(name) if name else 'a custom CvT'
    if arch is not None:
        want = CvT.arch_zoo.get(str(arch).lower())
        if want is None:
            raise ValueError(f'Unknown --arch "{arch}"; valid names are '
                             f'{sorted(CvT.arch_zoo)}.')
        if (info['depths'] != want['depths']
                or info['embed_dims'] != want['embed_dims']):
            raise ValueError(
                f'{src} is not a {CvT.display_name(str(arch))} checkpoint: '
                f'it looks like {looks} (depths='
                f'{info["depths"]}, embed_dims={info["embed_dims"]}).')
    meta = dict(
        source=osp.abspath(src),
        source_format=fmt,
        arch=name if name else dict(
            embed_dims=info['embed_dims'], depths=info['depths']),
        converter='mmcvt tools/model_converters/cvt_to_mmcvt.py')
    torch.save({'state_dict': converted, 'meta': meta}, dst)
    return fmt, name, converted


def main(argv=None):
    args = parse_args(argv)
    try:
        fmt, name, converted = convert(args.src, args.dst, args.arch)
    except ValueError as e:
        print(f'cvt_to_mmcvt: error: {e}', file=sys.stderr)
        return 1
    info = infer_arch(converted)
    variant = CvT.display_name(name) if name else (
        f'custom CvT (depths={info["depths"]}, '
        f'embed_dims={info["embed_dims"]})')
    print(f'detected format: {fmt}')
    print(f'detected variant: {variant}')
    print(f'wrote {len(converted)} tensors to {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
