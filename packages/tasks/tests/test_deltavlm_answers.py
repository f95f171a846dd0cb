"""DeltaVLM's answer formats (github.com/hanlinwu/DeltaVLM), parsed and scored as DeltaVLM reads them.

Answers are copied from its code: scripts/data_processing.ipynb (the dialogue record: "No", "No roads has
changed, and no buildings has changed."), scripts/test-cls.ipynb (the no-change captions it reads as
"no"), scripts/test-count.ipynb (its zero-count sentences, and its parser, copied below as the oracle),
scripts/test-loc.ipynb (the cell names, its example cell lists, "roads [] buildings []", and its parser,
copied below as the oracle). Non-zero count answers are not quoted anywhere in the code: the ones here
have the shape its parser reads ("<n> new roads ... <m> new buildings").
"""

import ast
import math
import re

import pytest

from rsforge.datasets.prompts import GRID_CELLS
from rsforge.tasks import parsers as p
from rsforge.tasks.metrics.answers import Counts, count_metrics, grid_metrics

# scripts/test-loc.ipynb, eval_loc's labels (row-major, as GRID_CELLS)
DELTAVLM_CELLS = ["top-left", "top-center", "top-right", "center-left", "center-center", "center-right",
                  "bottom-left", "bottom-center", "bottom-right"]  # fmt: skip
TO_RSFORGE = dict(zip(DELTAVLM_CELLS, GRID_CELLS, strict=True))


def deltavlm_counts(cap: str) -> dict[str, int]:
    """scripts/test-count.ipynb's parser of a count answer, as written there."""
    if "there are no changes in roads or buildings" in cap or "no new roads or buildings" in cap:
        return {"road": 0, "building": 0}
    caps = cap.split("new")
    r_text, b_text = caps[0], caps[1]
    road = 0 if "no" in r_text else int(re.findall(r"\d+", r_text)[0])
    building = 0 if "no" in b_text else int(re.findall(r"\d+", b_text)[0])
    return {"road": road, "building": building}


def deltavlm_grid(cap: str) -> dict[str, list[str]]:
    """scripts/test-loc.ipynb's parser of a localisation answer, as written there."""
    if "roads [] buildings []" in cap:
        return {"road": [], "building": []}
    road = ast.literal_eval(re.findall(r"roads\s*(\[[^\]]*\])", cap)[0])
    building = ast.literal_eval(re.findall(r"buildings\s*(\[[^\]]*\])", cap)[0])
    return {"road": road, "building": building}


@pytest.mark.parametrize(("text", "value"), [
    ("Yes", True), ("No", False),  # scripts/data_processing.ipynb
    # scripts/test-cls.ipynb's nochange_caps: a caption that says nothing changed is a "no"
    ("there is no difference", False), ("the two scenes seem identical", False),
    ("the scene is the same as before", False), ("no change has occurred", False),
    ("almost nothing has changed", False), ("The two scenes seem identical.", False),
])  # fmt: skip
def test_binary_answers(text, value):
    assert p.parse_yes_no(text) is value


def test_a_change_caption_is_not_a_yes():
    assert p.parse_yes_no("a road is built on the bareland") is None


COUNT_ANSWERS = [
    "No roads has changed, and no buildings has changed.",  # scripts/data_processing.ipynb
    "there are no changes in roads or buildings",  # scripts/test-count.ipynb
    "no new roads or buildings",  # scripts/test-count.ipynb
    "there are 2 new roads and 3 new buildings",
    "1 new road and no new buildings",
    "no new roads and 4 new buildings",
]


@pytest.mark.parametrize("text", COUNT_ANSWERS)
def test_counts_per_class_as_deltavlm_reads_them(text):
    counts = p.parse_counts(text)
    # the dialogue's sentence has no "new", which the notebook's parser splits on: it counts nothing
    expected = deltavlm_counts(text) if "new" in text else {"road": 0, "building": 0}
    assert counts == Counts(sum(expected.values()), expected)


def test_count_metrics_are_deltavlm_mae_and_rmse_per_class():
    refs = [p.parse_counts(t) for t in COUNT_ANSWERS[1:]]
    preds = [p.parse_counts(t) for t in ("there are 1 new roads and 1 new buildings", *COUNT_ANSWERS[2:4],
                                          "no new roads or buildings", "no new roads and 2 new buildings")]  # fmt: skip
    m = count_metrics(preds, refs)
    # road errors 1, 0, 0, -1, 0; building errors 1, 0, 0, 0, -2 (test-count.ipynb's compute_mae_rmse)
    assert m["mae/road"] == pytest.approx(0.4) and m["rmse/road"] == pytest.approx(math.sqrt(2 / 5))
    assert m["mae/building"] == pytest.approx(0.6) and m["rmse/building"] == pytest.approx(1.0)
    assert m["accuracy"] == pytest.approx(2 / 5) and m["malformed"] == 0


def test_a_no_change_reference_counts_zero_of_every_class():
    m = count_metrics([Counts(1, {"road": 1})], [Counts(0)])
    assert m["mae"] == 1.0 and "mae/road" not in m  # no reference names a class
    m = count_metrics([Counts(1, {"road": 1}), Counts(2, {"road": 2})], [Counts(0), Counts(2, {"road": 2})])
    assert m["mae/road"] == 0.5  # "no change" is 0 roads


GRID_ANSWERS = [
    "roads [] buildings []",  # scripts/test-loc.ipynb
    "roads ['top-center'] buildings ['center-center']",
    # scripts/test-loc.ipynb's example cell lists, in the answer shape its regexes read
    "roads ['top-left', 'top-center'] buildings ['top-right', 'center-left', 'bottom-left', 'bottom-center', "
    "'bottom-right']",
    "roads [] buildings ['top-center']",
]


@pytest.mark.parametrize("text", GRID_ANSWERS)
def test_grid_as_deltavlm_reads_it_and_written_back(text):
    grid = p.parse_grid(text)
    oracle = deltavlm_grid(text)
    assert grid == {"roads": frozenset(TO_RSFORGE[c] for c in oracle["road"]),
                    "buildings": frozenset(TO_RSFORGE[c] for c in oracle["building"])}  # fmt: skip
    assert p.format_grid(grid, style="deltavlm") == text


def test_every_deltavlm_cell_round_trips():
    for cell in DELTAVLM_CELLS:
        text = f"roads ['{cell}'] buildings []"
        assert p.format_grid(p.parse_grid(text), style="deltavlm") == text
    with pytest.raises(ValueError, match="DeltaVLM names every category"):
        p.format_grid({}, style="deltavlm")


def test_grid_metrics_per_category_as_deltavlm_reports_them():
    refs = [p.parse_grid(t) for t in GRID_ANSWERS[1:]]
    preds = [p.parse_grid(t) for t in ("roads ['top-center'] buildings []", GRID_ANSWERS[2], "roads buildings")]
    m = grid_metrics(preds, refs)
    # roads: tp 1 + 2, fn 0; buildings: tp 0 + 5, fn 1 + 1 (the malformed answer predicts nothing)
    assert m["precision/roads"] == 1.0 and m["recall/roads"] == 1.0 and m["exact_match/roads"] == pytest.approx(2 / 3)
    assert m["precision/buildings"] == 1.0 and m["recall/buildings"] == pytest.approx(5 / 7)
    assert m["exact_match/buildings"] == pytest.approx(1 / 3) and m["malformed"] == 1
