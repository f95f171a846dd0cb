"""Answer and box metrics against values computed by hand on fixed inputs."""

from __future__ import annotations

import math

import pytest

from rsforge.tasks.metrics.answers import Counts, accuracy_by_group, binary_metrics, count_metrics, grid_metrics
from rsforge.tasks.metrics.boxes import (
    box_iou,
    grounding_metrics,
    polygon_detection_metrics,
    polygon_iou,
)


def test_binary_metrics_count_malformed_as_the_wrong_answer():
    # tp (yes/yes), fn (no/yes), malformed on yes -> fn, fp (yes/no), malformed on no -> fp
    m = binary_metrics([True, False, None, True, None], [True, True, True, False, False])
    assert m == {"accuracy": 0.2, "precision": pytest.approx(1 / 3), "recall": pytest.approx(1 / 3),
                 "f1": pytest.approx(1 / 3), "n": 5, "malformed": 2}  # fmt: skip


def test_binary_metrics_perfect_and_empty_denominators():
    assert binary_metrics([False, False], [False, False]) == {
        "accuracy": 1.0, "precision": 0.0, "recall": 0.0, "f1": 0.0, "n": 2, "malformed": 0}  # fmt: skip


def test_count_metrics_per_class():
    refs = [Counts(3, {"building": 3}), Counts(4, {"building": 3, "road": 1}), Counts(2)]
    preds = [Counts(2, {"building": 2}), Counts(4, {"building": 3, "road": 1}), None]
    m = count_metrics(preds, refs)
    # totals: errors -1, 0, -2 (malformed counts as 0); classes only where the reference names them
    assert m["accuracy"] == pytest.approx(1 / 3)
    assert m["mae"] == pytest.approx(1.0) and m["rmse"] == pytest.approx(math.sqrt(5 / 3))
    assert m["mae/building"] == pytest.approx(0.5) and m["rmse/building"] == pytest.approx(math.sqrt(0.5))
    assert m["mae/road"] == 0.0 and m["rmse/road"] == 0.0
    assert m["n"] == 3 and m["malformed"] == 1


def test_count_bare_number_scores_the_total():
    m = count_metrics([Counts(2, {"building": 2}), Counts(5)], [Counts(2), Counts(3)])
    assert m["accuracy"] == 0.5 and m["mae"] == 1.0 and m["rmse"] == pytest.approx(math.sqrt(2))
    assert not any(k.startswith("mae/") for k in m)


def test_grid_metrics():
    b, r = "buildings", "roads"
    refs = [{b: frozenset({"top-left", "center"})}, {}, {b: frozenset({"top-left"}), r: frozenset({"left", "center",
            "right"})}, {b: frozenset({"center"})}]  # fmt: skip
    preds = [{b: frozenset({"top-left"})}, {}, None, {b: frozenset({"center"}), r: frozenset({"left"})}]
    m = grid_metrics(preds, refs)
    # tp 1+0+0+1, fp 0+0+0+1, fn 1+0+4+0; jaccard 1/2, 1 (both empty), 0 (malformed), 1/2
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 7)
    assert m["f1"] == pytest.approx(0.4) and m["jaccard"] == pytest.approx(0.5)
    assert m["exact_match"] == 0.25 and m["n"] == 4 and m["malformed"] == 1


def test_malformed_grid_is_wrong_even_when_nothing_changed():
    m = grid_metrics([None], [{}])
    assert m["exact_match"] == 0.0 and m["jaccard"] == 0.0 and m["malformed"] == 1


def test_accuracy_by_group():
    m = accuracy_by_group([True, False, True, True], ["a", "a", "b", None], malformed=1)
    assert m == {"accuracy": 0.75, "accuracy/a": 0.5, "accuracy/b": 1.0, "n": 4, "malformed": 1}


def test_box_iou():
    assert box_iou((0, 0, 10, 10), (5, 5, 15, 15)) == pytest.approx(25 / 175)
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_grounding_metrics():
    preds = [(0, 0, 10, 10), None, (0, 0, 10, 10)]
    refs = [[(0, 0, 10, 10)], [(0, 0, 1, 1)], [(5, 5, 15, 15), (0, 0, 10, 5)]]  # best of several: 0.5
    assert grounding_metrics(preds, refs) == {"acc@0.5": pytest.approx(2 / 3), "mean_iou": pytest.approx(0.5),
                                              "n": 3, "malformed": 1}  # fmt: skip


def _square(x0, y0, x1, y1):
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def test_polygon_iou_exact():
    square = _square(0, 0, 2, 2)
    assert polygon_iou(square, square) == pytest.approx(1.0)
    assert polygon_iou(square, _square(1, 0, 3, 2)) == pytest.approx(1 / 3)
    # a diamond inscribed in the square: half its area
    assert polygon_iou(square, ((1, 0), (2, 1), (1, 2), (0, 1))) == pytest.approx(0.5)
    # a diamond of area 8 centred on the square's corner (2, 2): the overlap is a triangle of area 2
    assert polygon_iou(square, ((2, 0), (4, 2), (2, 4), (0, 2))) == pytest.approx(2 / 10)
    assert polygon_iou(square, _square(5, 5, 6, 6)) == 0.0


def test_polygon_iou_ignores_point_order_and_orientation():
    other = _square(1, 0, 3, 2)
    crossed = ((0, 0), (2, 2), (2, 0), (0, 2))  # corners in a bow-tie order: still the square
    clockwise = tuple(reversed(other))
    assert polygon_iou(crossed, clockwise) == pytest.approx(1 / 3)


def test_polygon_iou_matches_box_iou_on_rectangles():
    a, b = (0.0, 0.0, 10.0, 10.0), (5.0, 2.0, 15.0, 7.0)
    assert polygon_iou(_square(*a), _square(*b)) == pytest.approx(box_iou(a, b))


def test_polygon_iou_degenerate():
    assert polygon_iou(((0, 0), (1, 1), (2, 2), (3, 3)), _square(0, 0, 2, 2)) == 0.0


def test_polygon_detection_metrics():
    ref = [_square(0, 0, 2, 2)]
    preds = [[_square(0, 0, 2, 2), _square(10, 10, 12, 12)], None, [_square(1, 0, 3, 2)], []]
    refs = [ref, ref, ref, []]
    m = polygon_detection_metrics(preds, refs)
    # tp 1 of 3 predictions and 3 references; matched IoUs of references 1, 0, 1/3
    assert m["precision"] == pytest.approx(1 / 3) and m["recall"] == pytest.approx(1 / 3)
    assert m["f1"] == pytest.approx(1 / 3) and m["mean_iou"] == pytest.approx(4 / 9)
    assert m["accuracy"] == 0.25 and m["n"] == 4 and m["malformed"] == 1


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        binary_metrics([True, False], [True])
