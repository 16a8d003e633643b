# Copyright (c) mmcvt contributors. All rights reserved.
"""Where CvT checkpoints come from: local torch or safetensors files, and the
HuggingFace hub (``hf://owner/repo[/file]``), for every place mmengine loads
a checkpoint (``init_cfg``, ``load_from``, ``tools/test.py``, mmpretrain's
``get_model``).

:func:`register_schemes` (run by ``import mmcvt``) registers two loaders with
mmengine's ``CheckpointLoader``:

- ``''`` (local files): ``.safetensors`` through ``safetensors``, anything
  else through the safe torch loader
  (:func:`mmcvt.compat.load_checkpoint_file`);
- ``'hf://'``: the file is downloaded through ``huggingface_hub`` (its cache;
  ``HF_ENDPOINT`` for a mirror, ``HF_HUB_OFFLINE=1`` to use the cache only).
  Without a file name, ``model.safetensors`` is taken, else
  ``pytorch_model.bin``. A revision goes after the repo:
  ``hf://microsoft/cvt-13@main``.

A whole official (``stage0.*``) or HuggingFace (``cvt.encoder.*``) CvT state
dict comes back in the mmpretrain classifier layout (``backbone.*``,
``head.fc.*``), so it fits an mmpretrain ``ImageClassifier`` as it is and a
detector's or segmentor's backbone through ``init_cfg``. Every other
checkpoint (mmengine runs, other models) comes back untouched.
"""
import os
import os.path as osp
from typing import Optional, Tuple

from mmcvt.compat import load_checkpoint_file

__all__ = [
    'HF_SCHEME', 'HUB_FILES', 'parse_hf_url', 'download', 'read_file',
    'load_local', 'load_hf', 'cvt_layout', 'register_schemes'
]

HF_SCHEME = 'hf://'
# what a hub repo without a file name is read from, in this order
HUB_FILES = ('model.safetensors', 'pytorch_model.bin')


def cvt_layout(checkpoint):
    """An official or HuggingFace CvT state dict in the mmpretrain layout;
    anything else (including a state dict that does not convert completely)
    unchanged."""
    from mmcvt.models.utils import convert_checkpoint, detect_format, unwrap
    try:
        state_dict = unwrap(checkpoint)
        fmt = detect_format(state_dict)
        if fmt in ('official', 'hf'):
            return convert_checkpoint(state_dict, fmt)
    except ValueError:  # not (wholly) a CvT checkpoint
        pass
    return checkpoint


def _load_safetensors(filename: str, map_location=None) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    device = map_location if isinstance(map_location, str) else 'cpu'
    try:
        return dict(load_file(filename, device=device))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(
            f'{filename} ({osp.getsize(filename):,} bytes) is not a readable '
            f'safetensors file ({type(e).__name__}: {e}). Download or save '
            'it again.') from e


def read_file(filename: str, map_location=None) -> dict:
    """A local checkpoint as stored: ``.safetensors`` through
    ``safetensors``, anything else through the safe torch loader."""
    filename = osp.expanduser(filename)
    if filename.endswith('.safetensors'):
        if not osp.isfile(filename):
            raise FileNotFoundError(f'{filename} can not be found.')
        return _load_safetensors(filename, map_location)
    return load_checkpoint_file(filename, map_location)


def load_local(filename: str, map_location=None) -> dict:
    """A local checkpoint (:func:`read_file`), official / HuggingFace CvT
    layouts converted (:func:`cvt_layout`)."""
    return cvt_layout(read_file(filename, map_location))


def parse_hf_url(url: str) -> Tuple[str, Optional[str], Optional[str]]:
    """``hf://owner/repo[@revision][/path/in/repo]`` -> ``(repo_id, path or
    None, revision or None)``."""
    rest = url[len(HF_SCHEME):] if url.startswith(HF_SCHEME) else url
    parts = rest.strip('/').split('/')
    if len(parts) < 2 or not all(parts[:2]):
        raise ValueError(
            f'{url}: a hub checkpoint is hf://owner/repo[/file], e.g. '
            'hf://microsoft/cvt-13 or hf://microsoft/cvt-21/pytorch_model.bin'
        )
    name, _, revision = parts[1].partition('@')
    path = '/'.join(parts[2:]) or None
    return f'{parts[0]}/{name}', path, revision or None


def _hub_settings() -> dict:
    """The hub endpoint, cache and offline switch, read when a file is
    needed (``HF_ENDPOINT``, ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``)."""
    from huggingface_hub import constants
    offline = os.environ.get('HF_HUB_OFFLINE')
    return dict(
        endpoint=os.environ.get('HF_ENDPOINT') or constants.ENDPOINT,
        cache_dir=os.environ.get('HF_HUB_CACHE') or constants.HF_HUB_CACHE,
        local_files_only=constants.HF_HUB_OFFLINE if offline is None else
        offline.upper() in ('1', 'ON', 'YES', 'TRUE'))


def download(url: str) -> str:
    """The local path of a hub checkpoint (downloaded once, then cached).

    Raises:
        FileNotFoundError: No such repository, revision or file.
        ConnectionError: The hub cannot be reached and the cache has no copy.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    repo_id, path, revision = parse_hf_url(url)
    hub = _hub_settings()
    names = [path] if path else list(HUB_FILES)
    unreachable = None
    for name in names:
        try:
            return hf_hub_download(repo_id, name, revision=revision, **hub)
        except RepositoryNotFoundError:
            raise FileNotFoundError(
                f'{url}: no repository "{repo_id}" on {hub["endpoint"]} (or '
                'it is private). Check the name, e.g. hf://microsoft/cvt-13; '
                'set HF_ENDPOINT for a mirror.') from None
        except RevisionNotFoundError:
            raise FileNotFoundError(
                f'{url}: "{repo_id}" has no revision "{revision}".') from None
        except LocalEntryNotFoundError as e:  # offline, or no connection
            # (a subclass of EntryNotFoundError): the other candidates from
            # the cache only, without waiting for the hub again
            unreachable = e
            hub['local_files_only'] = True
        except EntryNotFoundError:
            continue
    if unreachable is not None:
        where = ('HF_HUB_OFFLINE is set' if _hub_settings()['local_files_only']
                 else f'{hub["endpoint"]} cannot be reached')
        raise ConnectionError(
            f'{url}: {where} and the cache ({hub["cache_dir"]}) has no copy '
            f'of {" or ".join(names)}. Connect to the network once (the file '
            'is cached for later offline use with HF_HUB_OFFLINE=1), set '
            'HF_ENDPOINT to a reachable mirror, or give a local file.'
        ) from unreachable
    raise FileNotFoundError(
        f'{url}: "{repo_id}" has no {" or ".join(names)}. Name the file, e.g. '
        f'hf://{repo_id}/pytorch_model.bin.')


def load_hf(filename: str, map_location=None) -> dict:
    """``hf://owner/repo[/file]``: download (or take from the cache) and
    load as :func:`load_local` does."""
    return load_local(download(filename), map_location)


def register_schemes() -> None:
    """Register :func:`load_local` (``''``) and :func:`load_hf`
    (``'hf://'``) with mmengine's ``CheckpointLoader``."""
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='', force=True)(load_local)
    CheckpointLoader.register_scheme(
        prefixes=HF_SCHEME, force=True)(load_hf)
