"""DOTA as released, on the real sample in /work/shared/data/dota (DOTA_devkit's example P1888), and
the resolution-free (norm1000) answers of the grounding readers. The expectations are computed here
from the label file and from the devkit's rules, not from the reader."""

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from shapely.geometry import Polygon, box

from rsforge.core.cli import main
from rsforge.datasets.dota import DotaDatasetConfig, load_dota, read_dota
from rsforge.datasets.dota_split import SplitOptions, split_dota
from rsforge.datasets.grounding import read_rsvg
from rsforge.tasks import parsers as p
from rsforge.tasks.builtin import TASKS

DOTA = Path("/work/shared/data/dota")
real = pytest.mark.skipif(not DOTA.is_dir(), reason=f"{DOTA}: the shared DOTA sample is not here")


def _label_rows(path: Path) -> list[tuple[list[float], str, int]]:
    """(polygon, class, difficult) of each instance line, as the devkit's parse_dota_poly reads them."""
    rows = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 9:
            rows.append(([float(v) for v in fields[:8]], fields[8], int(fields[9]) if len(fields) > 9 else 0))
    return rows


@pytest.fixture
def scene() -> tuple[Path, list[tuple[list[float], str, int]], tuple[int, int]]:
    rows = _label_rows(DOTA / "labelTxt" / "P1888.txt")
    with Image.open(DOTA / "images" / "P1888.png") as im:
        return DOTA / "images" / "P1888.png", rows, im.size


@real
def test_every_instance_with_its_class_difficult_flag_and_header(scene):
    _, rows, size = scene
    samples = load_dota(DotaDatasetConfig(root=str(DOTA)), "test")
    assert sum(len(s.boxes) for s in samples) == len(rows) == 64
    assert {s.meta["category"]: len(s.boxes) for s in samples} == Counter(c for _, c, _ in rows)
    assert {s.meta["category"]: len(s.boxes) for s in samples} == {"large-vehicle": 50, "small-vehicle": 14}
    for s in samples:
        mine = [(poly, d) for poly, c, d in rows if c == s.meta["category"]]
        assert s.boxes == [poly for poly, _ in mine] and s.meta["difficult"] == [d for _, d in mine]
        assert s.meta["gsd"] == pytest.approx(0.266170468393) and s.meta["image_source"] == "GoogleEarth"
        assert s.meta["coordinates"] == "norm1000" and tuple(s.meta["image_size"]) == size


@real
def test_data_check_reports_every_instance(capsys):
    assert main(["data", "check", str(DOTA), "--format", "dota", "--split", "test"]) == 0
    out = capsys.readouterr().out
    assert "test: 2 samples" in out and "boxes: 64 " in out and "problems: 0" in out


@real
def test_a_recipe_limit_says_what_it_left_out(caplog):
    with caplog.at_level(logging.WARNING, logger="rsforge.data"):
        samples = read_dota(DOTA, "test", max_instances=20)
    assert [s.meta["category"] for s in samples] == ["small-vehicle"]
    assert "left out 50 instances in 1 (image, class) groups of more than 20 (max_instances)" in caplog.text


def test_difficult_filter_unknown_classes_and_null_gsd_are_reported(tmp_path, caplog):
    for folder in ("images", "labelTxt"):
        (tmp_path / folder).mkdir()
    Image.fromarray(np.zeros((40, 80, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    (tmp_path / "labelTxt" / "a.txt").write_text(
        "imagesource:GoogleEarth\ngsd:null\n"
        "1 1 9 1 9 9 1 9 plane 1\n2 2 8 2 8 8 2 8 plane 0\n3 3 7 3 7 7 3 7 helipad\n4 4 6 4 6 6 4 6 tractor 0\n"
    )
    (tmp_path / "train.txt").write_text("a\n")
    (plane,) = [s for s in read_dota(tmp_path, "train") if s.meta["category"] == "plane"]
    assert plane.meta["difficult"] == [1, 0] and plane.meta["gsd"] is None
    with caplog.at_level(logging.WARNING, logger="rsforge.data"):
        samples = read_dota(tmp_path, "train", exclude_difficult=True)
    assert {s.meta["category"]: len(s.boxes) for s in samples} == {"plane": 1, "helipad": 1, "tractor": 1}
    assert "left out 1 difficult instances (exclude_difficult)" in caplog.text
    assert "classes of no DOTA release (v1.0, v1.5, v2.0), kept: tractor (1)" in caplog.text


def _devkit_starts(length: int, subsize: int, gap: int) -> list[int]:
    """ImgSplit's origins: every slide step whose patch ends inside the image, then one flush with the edge."""
    return [x for x in range(0, length, subsize - gap) if x + subsize < length] + [max(length - subsize, 0)]


@real
def test_split_follows_the_devkit_rules(scene, tmp_path):
    _, rows, (width, height) = scene
    sub, gap = 256, 64
    assert main(["data", "split-dota", str(DOTA), str(tmp_path / "out"), "--subsize", str(sub), "--gap", str(gap)]) == 0
    out = tmp_path / "out"
    grid = [(x, y) for x in _devkit_starts(width, sub, gap) for y in _devkit_starts(height, sub, gap)]
    names = [f"P1888__1__{x}___{y}" for x, y in grid]
    assert len(names) == 12 and sorted(p.stem for p in (out / "labelTxt").iterdir()) == sorted(names)
    assert (out / "list" / "test.txt").read_text().split() == names
    for (x, y), name in zip(grid, names, strict=True):
        with Image.open(out / "images" / f"{name}.png") as im:
            assert im.size == (sub, sub)
        written = _label_rows(out / "labelTxt" / f"{name}.txt")
        patch = box(x, y, min(x + sub, width - 1), min(y + sub, height - 1))
        for poly, cls, difficult in rows:
            shape = Polygon(np.reshape([int(v) for v in poly], (4, 2)))
            ratio = shape.intersection(patch).area / shape.area
            if ratio == 1:
                shifted = [int(v) - (x if k % 2 == 0 else y) for k, v in enumerate(poly)]
                assert (shifted, cls, difficult) in written, (name, poly)
            elif ratio >= 0.7:  # clipped; the devkit's 5-to-4 merge cuts a corner, may cross: hulls
                piece = shape.intersection(patch)
                piece = Polygon([(px - x, py - y) for px, py in piece.exterior.coords])
                flag = difficult if ratio > 0.7 else 2
                hulls = [Polygon(np.reshape(w, (4, 2))).convex_hull for w, c, d in written if (c, d) == (cls, flag)]
                assert max(h.intersection(piece).area / h.union(piece).area for h in hulls) > 0.5, (name, poly)
        assert all(1 <= v <= sub for w, _, _ in written for v in w)
    marked = sum(d == 2 for f in (out / "labelTxt").iterdir() for _, _, d in _label_rows(f))
    assert marked == 24  # pieces of at most 0.7 of their instance, as the devkit's own run marks them


@real
def test_split_output_reads_back(tmp_path):
    summary = split_dota(DOTA, tmp_path / "out", SplitOptions(subsize=256, gap=64), progress=False)
    assert (summary.scenes, summary.patches) == (1, 12)
    samples = read_dota(tmp_path / "out", "test", exclude_difficult=True)
    assert samples and all(d == 0 for s in samples for d in s.meta["difficult"])


@real
def test_norm1000_answers_parse_back_to_pixels():
    samples = load_dota(DotaDatasetConfig(root=str(DOTA)), "test")
    for s in samples:
        assert all(0 <= int(v) < 1000 for v in p._numbers(s.answer))
        parsed = p.parse_polygons(s.answer, normalized=tuple(s.meta["image_size"]))
        flat = [[c for point in poly for c in point] for poly in parsed]
        assert np.abs(np.array(flat) - np.array(s.boxes)).max() <= 1.0
    scored = TASKS["oriented_grounding"].score(samples, [s.answer for s in samples])
    assert scored.metrics["oriented_grounding"]["recall"] == 1.0
    assert scored.metrics["oriented_grounding"]["mean_iou"] > 0.9


def _wide_rsvg(tmp_path: Path) -> Path:
    (tmp_path / "JPEGImages").mkdir()
    Image.fromarray(np.zeros((100, 300, 3), np.uint8)).save(tmp_path / "JPEGImages" / "1.jpg")
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "1.xml").write_text(
        "<annotation><filename>1.jpg</filename><object><name>ship</name><bndbox><xmin>30</xmin><ymin>10</ymin>"
        "<xmax>150</xmax><ymax>60</ymax></bndbox><description>the ship</description></object></annotation>"
    )
    (tmp_path / "test.txt").write_text("1\n")
    return tmp_path


def test_grounding_on_a_wide_image_scores_a_perfect_normalised_answer(tmp_path):
    (sample,) = read_rsvg(_wide_rsvg(tmp_path), "test", coordinates="norm1000")
    assert sample.answer == "[100, 100, 500, 600]" and sample.boxes == [[30, 10, 150, 60]]
    assert "in pixels" not in sample.conversation[0].text
    for flag in (False, True):  # the data's units decide, whatever the evaluation's flag says
        scored = TASKS["grounding"].score([sample], ["[100, 100, 500, 600]"], normalized_coords=flag)
        assert scored.metrics["grounding"]["mean_iou"] == pytest.approx(1.0)
    scored = TASKS["grounding"].score([sample], ["(100,100),(500,600)"])  # Qwen2-VL's own box text
    assert scored.metrics["grounding"]["mean_iou"] == pytest.approx(1.0)
    (pixels,) = read_rsvg(tmp_path, "test", coordinates="pixels")
    assert pixels.answer == "[30, 10, 150, 60]"
    assert TASKS["grounding"].score([pixels], [pixels.answer]).metrics["grounding"]["mean_iou"] == 1.0


def test_norm1000_stays_below_1000_and_other_units_are_refused():
    from rsforge.datasets.prompts import coordinates_text

    assert coordinates_text([0, 0, 300, 100], (300, 100), "norm1000") == "[0, 0, 999, 999]"
    assert coordinates_text([0.5, 2, 300, 100], (300, 100), "pixels") == "[0.5, 2, 300, 100]"
    with pytest.raises(ValueError, match="coordinates must be one of norm1000, pixels, got 'unit'"):
        coordinates_text([1, 2, 3, 4], (10, 10), "unit")
