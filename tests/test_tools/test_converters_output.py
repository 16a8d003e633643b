"""The data converters never delete what they did not write: a --out folder
whose train/ (prepare_digits.py) or images/, annotations/, seg_maps/,
meta/ (prepare_digit_scenes.py) another program wrote is refused, with
nothing deleted, unless --overwrite; their own earlier output (also one
written before the ownership mark existed) is rewritten as before."""
import json
import os
import os.path as osp
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools', 'dataset_converters'))
import prepare_digit_scenes  # noqa: E402
import prepare_digits  # noqa: E402

sys.path.pop(0)


def _foreign(folder, sub='train'):
    path = osp.join(folder, sub, 'precious.txt')
    os.makedirs(osp.dirname(path))
    with open(path, 'w') as f:
        f.write('not yours')
    return path


def test_prepare_digits_keeps_a_foreign_folder(tmp_path, capsys):
    out = str(tmp_path / 'mine')
    precious = _foreign(out)
    with pytest.raises(FileExistsError, match='did not write'):
        prepare_digits.prepare_digits(out, size=8)
    assert prepare_digits.main(['--out', out, '--size', '8']) == 2
    err = capsys.readouterr().err
    assert 'already holds train/, which prepare_digits did not write' in err
    assert 'Nothing was deleted' in err and '--overwrite' in err
    assert open(precious).read() == 'not yours'
    assert prepare_digits.main(['--out', out, '--size', '8',
                                '--overwrite']) == 0
    assert not osp.exists(precious)


def test_prepare_digits_rewrites_its_own_output(tmp_path):
    out = str(tmp_path / 'digits')
    prepare_digits.prepare_digits(out, size=8)
    prepare_digits.prepare_digits(out, size=10)  # other settings: rewritten
    # written before the mark existed: its settings file says whose it is
    os.remove(osp.join(out, 'meta', 'written_by.json'))
    prepare_digits.prepare_digits(out, size=8)
    with open(osp.join(out, 'meta', 'settings.json')) as f:
        assert json.load(f)['size'] == 8


def test_prepare_digit_scenes_keeps_a_foreign_folder(tmp_path, capsys):
    out = str(tmp_path / 'scenes')
    precious = _foreign(out, 'annotations')
    argv = ['--out', out, '--num-train', '2', '--num-val', '2']
    assert prepare_digit_scenes.main(argv) == 2
    assert 'already holds annotations/' in capsys.readouterr().err
    assert open(precious).read() == 'not yours'
    assert prepare_digit_scenes.main(argv + ['--overwrite']) == 0
    assert not osp.exists(precious)
    # its own output, with other settings: rewritten without --overwrite
    assert prepare_digit_scenes.main(argv[:-1] + ['3']) == 0
    with open(osp.join(out, 'annotations', 'instances_val.json')) as f:
        assert len(json.load(f)['images']) == 3
