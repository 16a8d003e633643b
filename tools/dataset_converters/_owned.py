"""Which output folders a data converter may rewrite: only its own.

A converter replaces the subfolders it writes (``train/``, ``images/``, ...)
when it rewrites a data set. It does so only where they are absent, where
the folder holds its own earlier output (``meta/written_by.json`` naming it,
or the ``meta/settings.json`` an earlier version of it wrote), or where the
user said ``--overwrite``: a tool never deletes what it did not write.
"""
import json
import os
import os.path as osp
from typing import Iterable

MARK = osp.join('meta', 'written_by.json')


def _ours(out: str, tool: str, settings_keys: Iterable[str]) -> bool:
    try:
        with open(osp.join(out, MARK)) as f:
            return json.load(f).get('tool') == tool
    except (OSError, ValueError, AttributeError):
        pass
    try:  # written before the mark existed: its settings, key for key
        with open(osp.join(out, 'meta', 'settings.json')) as f:
            return set(json.load(f)) == set(settings_keys)
    except (OSError, ValueError, TypeError):
        return False


def claim(out: str, tool: str, subdirs: Iterable[str],
          settings_keys: Iterable[str], overwrite: bool = False) -> None:
    """Check that ``tool`` may replace ``subdirs`` of ``out``, then mark
    ``out`` as its output.

    Raises:
        FileExistsError: If ``out`` holds any of ``subdirs`` that ``tool``
            did not write and ``overwrite`` is False. Nothing is deleted.
    """
    present = [d for d in subdirs if osp.exists(osp.join(out, d))]
    if present and not overwrite and not _ours(out, tool, settings_keys):
        raise FileExistsError(
            f'{out} already holds {", ".join(d + "/" for d in present)}, '
            f'which {tool} did not write (it has no {MARK} naming it). '
            'Nothing was deleted. Choose another --out, or pass --overwrite '
            'to replace them.')
    os.makedirs(osp.join(out, 'meta'), exist_ok=True)
    with open(osp.join(out, MARK), 'w') as f:
        json.dump(dict(tool=tool), f)
