"""Convert an official (microsoft/CvT) or HuggingFace CvT checkpoint to the
mmcvt / mmpretrain layout (``backbone.stages.*``, ``backbone.norm.*``,
``head.fc.*``).

    python tools/model_converters/cvt_to_mmcvt.py SRC DST [--arch 13]

SRC is a torch file (``.pth``/``.pt``/``.bin``; a bare state dict or one
wrapped as ``{'state_dict': ...}`` / ``{'model': ...}``), a ``.safetensors``
file or a hub model (``hf://microsoft/cvt-13``). DST receives
``{'state_dict': converted, 'meta': {...}}``, or, for a ``.safetensors``
DST, the converted tensors with the meta as string metadata. The conversion
logic lives in ``mmcvt/models/utils/ckpt_convert.py``.
"""
import argparse
import os.path as osp
import pickle
import sys

import torch

# runnable from a checkout without installing mmcvt
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

from mmcvt.checkpoint import HF_SCHEME, download, read_file  # noqa: E402
from mmcvt.models import CvT  # noqa: E402
from mmcvt.models.utils import (  # noqa
    convert_checkpoint,
    detect_format,
    infer_arch,
    unwrap,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert an official or HuggingFace CvT checkpoint to '
        'the mmcvt (mmpretrain) layout.')
    parser.add_argument(
        'src', help='official / HuggingFace checkpoint: a file (.pth, .bin, '
        '.safetensors) or hf://owner/repo[/file]')
    parser.add_argument('dst', help='output .pth or .safetensors path')
    parser.add_argument(
        '--arch',
        default=None,
        help='expected variant (13, 21, w24); fail if the checkpoint is '
        'another one')
    return parser.parse_args(argv)


def _load(path):
    try:
        local = download(path) if path.startswith(HF_SCHEME) else path
        return read_file(local, map_location='cpu')
    except FileNotFoundError as e:
        raise ValueError(f'No such checkpoint file: {path}'
                         f'{"" if "://" not in path else f" ({e})"}') from None
    except ConnectionError as e:
        raise ValueError(str(e)) from None
    except pickle.UnpicklingError as e:
        # a real checkpoint with Python objects the safe loader refuses
        raise ValueError(
            f'{path} holds Python objects besides tensors, which '
            'torch.load(weights_only=True) refuses; re-save its state '
            'dict alone (torch.save(ckpt["state_dict"], path)).') from e
    except ValueError as e:  # not a readable checkpoint at all
        raise ValueError(f'Cannot read {path}: corrupt or not a torch file. '
                         f'{e}') from e


def _save(converted: dict, meta: dict, dst: str) -> None:
    if dst.endswith('.safetensors'):
        from safetensors.torch import save_file
        save_file({k: v.contiguous()
                   for k, v in converted.items()},
                  dst,
                  metadata={k: str(v)
                            for k, v in meta.items()})
    else:
        torch.save({'state_dict': converted, 'meta': meta}, dst)


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
        source=src if '://' in src else osp.abspath(src),
        source_format=fmt,
        arch=name if name else dict(
            embed_dims=info['embed_dims'], depths=info['depths']),
        converter='mmcvt tools/model_converters/cvt_to_mmcvt.py')
    _save(converted, meta, dst)
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
