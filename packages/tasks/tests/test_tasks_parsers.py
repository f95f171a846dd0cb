"""Answer parsers: well-formed answers, their variants, and malformed ones (None, never an exception)."""

from __future__ import annotations

import sys

import pytest

from rsforge.datasets.prompts import GRID_CELLS
from rsforge.tasks import parsers as p
from rsforge.tasks.metrics.answers import Counts

MALFORMED = ["", "   ", "???", "lorem ipsum dolor", "[[[", "maybe [1, 2"]


@pytest.mark.parametrize(("text", "value"), [
    ("yes", True), ("no", False), ("Yes.", True), ("NO!", False), ("yes, a road was built", True),
    ("no, nothing changed", False), ("I think yes", True), ("true", True), ("False", False),
])  # fmt: skip
def test_yes_no(text, value):
    assert p.parse_yes_no(text) is value


@pytest.mark.parametrize("text", [*MALFORMED, "maybe", "it changed", "yesterday", "not sure: yes or no? no"])
def test_yes_no_malformed(text):
    assert p.parse_yes_no(text) is None


@pytest.mark.parametrize(("text", "counts"), [
    ("3", Counts(3)), ("two", Counts(2)), ("0", Counts(0)), ("none", Counts(0)), ("no change", Counts(0)),
    ("there are 3", Counts(3)),
    ("3 new buildings and 1 new road", Counts(4, {"building": 3, "road": 1})),
    ("three new buildings and one new road", Counts(4, {"building": 3, "road": 1})),
    ("2 buildings were demolished; a new road was built", Counts(3, {"building": 2, "road": 1})),
    ("a building was built", Counts(1, {"building": 1})),
    ("No new buildings", Counts(0, {"building": 0})),
    ("4 new_buildings", Counts(4, {"building": 4})),
    ("2 new factories", Counts(2, {"factory": 2})),
])  # fmt: skip
def test_counts(text, counts):
    assert p.parse_counts(text) == counts


@pytest.mark.parametrize("text", [*MALFORMED, "some buildings", "2 and 3", "many"])
def test_counts_malformed(text):
    assert p.parse_counts(text) is None


def test_grid_reads_the_synthetic_generator_format():
    text = "buildings ['top-left', 'center']; roads ['left', 'center', 'right']; vegetation ['bottom-right']"
    assert p.parse_grid(text) == {
        "buildings": frozenset({"top-left", "center"}),
        "roads": frozenset({"left", "center", "right"}),
        "vegetation": frozenset({"bottom-right"}),
    }
    assert p.format_grid(p.parse_grid(text)) == text  # cells in grid order, as synth writes them


@pytest.mark.parametrize(("text", "grid"), [
    ("no change", {}), ("No change.", {}), ("none", {}),
    ('buildings ["top left", "centre"]', {"buildings": frozenset({"top-left", "center"})}),
    ("Buildings: [top_right, upper-left]", {"buildings": frozenset({"top-right", "top-left"})}),
    ("buildings ['top'] ; buildings ['bottom']", {"buildings": frozenset({"top", "bottom"})}),
    ("buildings []", {"buildings": frozenset()}),
])  # fmt: skip
def test_grid_variants(text, grid):
    assert p.parse_grid(text) == grid


@pytest.mark.parametrize("text", [*MALFORMED, "buildings top-left", "buildings ['upper']", "['top-left']",
                                  "buildings ['top-left'] and more", "buildings ['top-left']; roads"])
def test_grid_malformed(text):
    assert p.parse_grid(text) is None


def test_every_grid_cell_round_trips():
    for cell in GRID_CELLS:
        assert p.parse_grid(f"roads ['{cell}']") == {"roads": frozenset({cell})}


@pytest.mark.parametrize(("text", "box"), [
    ("[10, 20, 30, 40]", (10, 20, 30, 40)),
    ("the box is [10.5, 20, 30, 40.25].", (10.5, 20, 30, 40.25)),
    ("(30, 40, 10, 20)", (10, 20, 30, 40)),  # corners in either order
    ("<box>(10,20),(30,40)</box>", (10, 20, 30, 40)),  # Qwen-VL style corners
    ("10 20 30 40", (10, 20, 30, 40)),
    ("[1, 2, 3, 4] and [5, 6, 7, 8]", (1, 2, 3, 4)),  # the first box
])  # fmt: skip
def test_box(text, box):
    assert p.parse_box(text) == pytest.approx(box)


@pytest.mark.parametrize("text", [*MALFORMED, "[1, 2, 3]", "box 1 2 3", "(1, 2), (3, 4), (5, 6)"])
def test_box_malformed(text):
    assert p.parse_box(text) is None


def test_normalized_coordinates_only_when_asked():
    assert p.parse_box("[500, 250, 1000, 1000]") == (500, 250, 1000, 1000)  # pixels by default
    assert p.parse_box("[500, 250, 1000, 1000]", normalized=(64, 32)) == pytest.approx((32, 8, 64, 32))
    (poly,) = p.parse_polygons("[0, 0, 1000, 0, 1000, 500, 0, 500]", normalized=(200, 100))
    assert [c for point in poly for c in point] == pytest.approx([0, 0, 200, 0, 200, 50, 0, 50])


SQUARE = ((0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0))


@pytest.mark.parametrize(("text", "polygons"), [
    ("[0, 0, 10, 0, 10, 10, 0, 10]", [SQUARE]),
    ("0 0 10 0 10 10 0 10", [SQUARE]),
    ("(0, 0), (10, 0), (10, 10), (0, 10)", [SQUARE]),
    ("[[0,0,10,0,10,10,0,10], [1,1,2,1,2,2,1,2]]", [SQUARE, ((1, 1), (2, 1), (2, 2), (1, 2))]),
    ("none", []), ("no objects", []),
])  # fmt: skip
def test_polygons(text, polygons):
    assert p.parse_polygons(text) == polygons


@pytest.mark.parametrize("text", [*MALFORMED, "[0, 0, 10, 0, 10, 10]", "(0, 0), (10, 0), (10, 10)",
                                  "[1, 2, 3, 4, 5, 6, 7, 8, 9]"])
def test_polygons_malformed(text):
    assert p.parse_polygons(text) is None


CANDIDATES = ["forest", "residential", "dense residential", "river"]


@pytest.mark.parametrize(("text", "choice"), [
    ("forest", "forest"), ("Forest.", "forest"), ("it is a river", "river"),
    ("dense residential area", "dense residential"),  # the longer name wins over the one it contains
])  # fmt: skip
def test_choice(text, choice):
    assert p.parse_choice(text, CANDIDATES) == choice


@pytest.mark.parametrize("text", [*MALFORMED, "forest or river", "desert", "forests"])
def test_choice_malformed(text):
    assert p.parse_choice(text, CANDIDATES) is None


@pytest.mark.parametrize(("text", "normal"), [
    ("Yes, it is.", "yes"), ("no", "no"), ("Two", "2"), ("the river", "river"), ("  A  Lake ", "lake"),
])  # fmt: skip
def test_normalize_answer(text, normal):
    assert p.normalize_answer(text) == normal


def test_parsers_do_not_import_torch():
    import subprocess

    code = "import sys, rsforge.tasks, rsforge.datasets.prompts; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
