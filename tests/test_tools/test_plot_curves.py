"""tools/analysis/plot_curves.py and mmcvt.utils.curves on scalar logs as
mmengine writes them: an iteration-based run, an epoch-based one (whose
validations are logged by epoch and must land at the iteration that ended
the epoch), a work dir that also holds a test run, a missing control run,
and a log without the metric asked for."""
import json
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from mmcvt.utils.curves import read_curves, scalars_file
from .tool_module import load_tool


def _write(work_dir, stamp, records):
    folder = osp.join(work_dir, stamp, 'vis_data')
    os.makedirs(folder, exist_ok=True)
    with open(osp.join(folder, 'scalars.json'), 'w') as f:
        f.writelines(json.dumps(r) + '\n' for r in records)


def _iter_run(work_dir, miou=(10.0, 30.0)):
    """1,000 iterations, loss every 50, validated at 500 and 1,000."""
    records = [dict(loss=2.0 / i, lr=1e-3, step=i) for i in range(50, 501, 50)]
    records.append(dict(mIoU=miou[0], aAcc=90.0, time=0.1, step=500))
    records += [dict(loss=2.0 / i, step=i) for i in range(550, 1001, 50)]
    records.append(dict(mIoU=miou[1], aAcc=95.0, time=0.1, step=1000))
    _write(work_dir, '20260101_000000', records)


def _epoch_run(work_dir):
    """3 epochs of 50 iterations, loss at inner iterations 20 and 40 (not
    at an epoch's end), validated after every epoch (step = the epoch)."""
    records = []
    for epoch in (1, 2, 3):
        for inner in (20, 40):
            it = (epoch - 1) * 50 + inner
            records.append(dict(loss=1.0 / it, epoch=epoch, iter=it, step=it))
        records.append({'coco/bbox_mAP': 0.1 * epoch, 'step': epoch})
    _write(work_dir, '20260101_000000', records)


def test_iteration_based_run(tmp_path):
    _iter_run(str(tmp_path))
    curves = read_curves(str(tmp_path), 'run')
    assert curves.loss_x == list(range(50, 1001, 50))
    assert curves.val_x == [500, 1000]
    assert curves.val['mIoU'] == [10.0, 30.0]
    assert 'time' not in curves.val


def test_epoch_based_validations_land_at_the_end_of_their_epoch(tmp_path):
    _epoch_run(str(tmp_path))
    curves = read_curves(str(tmp_path))
    assert curves.name == tmp_path.name
    assert curves.loss_x == [20, 40, 70, 90, 120, 140]
    assert curves.val_x == [50, 100, 150]
    assert curves.val['coco/bbox_mAP'] == pytest.approx([0.1, 0.2, 0.3])


def test_the_training_run_not_a_later_test_run(tmp_path):
    """tools/test.py with the same work dir writes a newer scalars.json
    with metrics only: the curves come from the training run."""
    _iter_run(str(tmp_path))
    _write(str(tmp_path), '20260102_000000', [dict(mIoU=31.0, step=0)])
    assert '20260101_000000' in scalars_file(str(tmp_path))
    assert read_curves(str(tmp_path)).val['mIoU'] == [10.0, 30.0]


def test_iteration_run_with_metrics_logged_by_epoch_is_named(tmp_path):
    """mmengine's LoggerHook logs validations at the epoch unless
    ``log_metric_by_epoch=False``: an iteration-based run then logs them
    all at step 0, which no curve can place."""
    _write(str(tmp_path), '20260101_000000', [
        dict(loss=1.0, step=10), dict(loss=0.5, step=20),
        dict(mIoU=30.0, step=0)])
    with pytest.raises(ValueError, match='log_metric_by_epoch=False'):
        read_curves(str(tmp_path))


def test_no_training_log_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match='vis_data/scalars.json'):
        read_curves(str(tmp_path))


def test_tool_draws_two_runs_and_leaves_out_a_missing_one(tmp_path, capsys):
    a, b = str(tmp_path / 'pretrained'), str(tmp_path / 'scratch')
    _iter_run(a, (20.0, 60.0))
    _iter_run(b)
    out = str(tmp_path / 'curves.png')
    tool = load_tool('analysis', 'plot_curves.py')
    assert tool.main([a, b, str(tmp_path / 'frozen'), '--out', out,
                      '--labels', 'pre', 'scratch', 'frozen']) == 0
    text = capsys.readouterr().out
    assert 'frozen not there, left out' in text
    assert 'mIoU of pre, scratch' in text
    picture = np.asarray(Image.open(out).convert('RGB'))
    assert picture.shape[0] > 200 and picture.shape[1] > 600
    # two coloured curves: more than black, white and the grid's greys
    assert len(np.unique(picture.reshape(-1, 3), axis=0)) > 20


def test_tool_errors(tmp_path):
    tool = load_tool('analysis', 'plot_curves.py')
    _iter_run(str(tmp_path / 'a'))
    with pytest.raises(SystemExit):  # labels do not match the work dirs
        tool.main([str(tmp_path / 'a'), '--out', 'x.png', '--labels', 'p',
                   'q'])
    with pytest.raises(ValueError, match='logs: aAcc, mIoU'):
        tool.main([str(tmp_path / 'a'), '--out', str(tmp_path / 'x.png'),
                   '--metric', 'accuracy/top1'])


def test_stack_pictures(tmp_path):
    """The README's prediction pictures: panels enlarged (nearest) and
    stacked with white gaps; a missing file is named."""
    a = np.zeros((10, 20, 3), np.uint8)
    b = np.full((6, 12, 3), 100, np.uint8)
    b[0, 0] = (255, 0, 0)
    paths = []
    for name, pic in (('a.png', a), ('b.png', b)):
        paths.append(str(tmp_path / name))
        Image.fromarray(pic).save(paths[-1])
    out = str(tmp_path / 'out.png')
    tool = load_tool('visualization', 'stack_pictures.py')
    assert tool.main([*paths, '--out', out, '--scale', '3', '--gap', '4']) == 0
    got = np.asarray(Image.open(out))
    assert got.shape == (10 * 3 + 4 + 6 * 3, 20 * 3, 3)
    assert (got[:30] == 0).all() and (got[30:34] == 255).all()
    assert (got[34:37, :3] == (255, 0, 0)).all()  # one pixel -> 3x3
    assert (got[37:, 36:] == 255).all()  # right of the narrower panel
    with pytest.raises(SystemExit):
        tool.main([paths[0], str(tmp_path / 'none.png'), '--out', out])
