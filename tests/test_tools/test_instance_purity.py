"""tools/analysis/instance_purity.py: the classes a semantic segmenter
paints on each object instance, counted on hand-made label maps."""
import numpy as np
import pytest

from .tool_module import load_tool

tool = load_tool('analysis', 'instance_purity.py')


def _mask(shape, rows, cols):
    m = np.zeros(shape, dtype=np.uint8)
    m[rows, cols] = 1
    return m


def test_rows_and_totals():
    # background 0; three instances of 10 pixels each
    pred = np.zeros((4, 10), dtype=np.int64)
    pred[0, :] = 3  # instance A (class 3): all right
    pred[1, :7] = 5  # instance B (class 5): 7 right, 2 of class 6, 1 bg
    pred[1, 7:9] = 6
    pred[2, :4] = 2  # instance C (class 4): 4 of 2, 3 of 4, 3 of 7
    pred[2, 4:7] = 4
    pred[2, 7:] = 7
    instances = [(_mask(pred.shape, 0, slice(None)), 3),
                 (_mask(pred.shape, 1, slice(None)), 5),
                 (_mask(pred.shape, 2, slice(None)), 4),
                 (_mask(pred.shape, 3, slice(None)), 1)]  # D: unpainted
    rows = tool.instance_rows(pred, instances, background=0, min_share=0.25)
    a, b, c, d = rows
    assert (a['majority'], a['share'], a['right'], a['classes']) == \
        (3, 1.0, True, 1)
    # B: the background pixel is left out of the shares: 7/9 and 2/9
    assert b['painted'] == pytest.approx(0.9)
    assert (b['majority'], b['right']) == (5, True)
    assert b['share'] == pytest.approx(7 / 9) and b['classes'] == 1
    assert (c['majority'], c['right'], c['classes']) == (2, False, 3)
    assert c['share'] == pytest.approx(0.4)
    assert (d['majority'], d['painted'], d['right']) == (None, 0.0, False)
    t = tool.totals(rows)
    assert t['instances'] == 4
    assert t['painted'] == pytest.approx(75)
    assert t['right_majority'] == pytest.approx(50)
    assert t['mean_majority_share'] == pytest.approx(
        100 * (1 + 7 / 9 + 0.4) / 3)
    assert t['mixed'] == pytest.approx(25)  # C only
    # a lower threshold counts B's second class too
    rows = tool.instance_rows(pred, instances, background=0, min_share=0.2)
    assert tool.totals(rows)['mixed'] == pytest.approx(50)


def test_without_background_class_every_pixel_counts():
    pred = np.array([[0, 0, 1, 1]])
    rows = tool.instance_rows(pred, [(np.ones_like(pred), 1)],
                              background=None, min_share=0.1)
    assert rows[0]['painted'] == 1.0
    assert rows[0]['classes'] == 2 and rows[0]['share'] == 0.5


def test_background_must_be_a_class_or_none():
    names = ('background', '0', '1')
    assert tool.background_index(names, 'background', 'cfg.py') == 0
    assert tool.background_index(names, '', 'cfg.py') is None
    # a misspelt name is not silently "no background class"
    with pytest.raises(SystemExit, match='--background "bg" is not a class '
                       'of cfg.py .*pass --background ""'):
        tool.background_index(names, 'bg', 'cfg.py')
