"""The synthetic generator's single-image tasks, read through the real readers, and `rsforge data check`."""

import json
from pathlib import Path

import pytest

from rsforge.core.cli import main
from rsforge.datasets.synth import LAND_COVER, SynthDatasetConfig, generate, load_synth

N, SIZE = 24, 32
FORMATS = {"levir_cc": {"change_captioning"}, "changechat": {"change_captioning", "binary_change", "counting",
           "grid_localization", "change_qa"}, "coco_captions": {"captioning"}, "class_folders": {"classification"},
           "rsvqa": {"vqa"}, "rsvg": {"grounding"}, "dota": {"oriented_grounding"}}  # fmt: skip


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("synth") / "d", N, seed=0, size=SIZE, progress=False)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_task_reads_through_its_reader(root, fmt, caplog):
    config = SynthDatasetConfig(n=N, size=SIZE, root=str(root), format=fmt)
    for split in ("train", "val", "test"):
        samples = load_synth(config, split)
        assert samples and {s.task for s in samples} <= FORMATS[fmt]
        assert all(s.answer for s in samples)
    assert "skipped" not in caplog.text


def test_single_image_tasks_are_consistent(root):
    classes = load_synth(SynthDatasetConfig(n=N, size=SIZE, root=str(root), format="class_folders"), "train")
    assert {s.answer for s in classes} == set(LAND_COVER)
    vqa = load_synth(SynthDatasetConfig(n=N, size=SIZE, root=str(root), format="rsvqa"), "test")
    assert {s.meta["question_type"] for s in vqa} == {"presence", "count", "comparison"}
    counts = {s.images[0]: int(s.answer) for s in vqa if s.meta["question_type"] == "count"}
    dota = load_synth(SynthDatasetConfig(n=N, size=SIZE, root=str(root), format="dota"), "test")
    for s in dota:  # the count question and the polygons agree
        assert len(s.boxes) == counts[s.images[0]] and all(len(b) == 8 for b in s.boxes)
    boxes = load_synth(SynthDatasetConfig(n=N, size=SIZE, root=str(root), format="rsvg"), "train")
    for s in boxes:
        x1, y1, x2, y2 = s.boxes[0]
        assert 0 <= x1 < x2 <= SIZE and 0 <= y1 < y2 <= SIZE and "building" in s.meta["expression"]
    assert any(not float(v).is_integer() for s in dota for b in s.boxes for v in b), "no rotated building"


def test_new_outputs_are_deterministic(tmp_path):
    def files(d: Path) -> dict[str, bytes]:
        return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}

    one = files(generate(tmp_path / "one", 7, seed=5, size=SIZE, progress=False))
    assert one == files(generate(tmp_path / "two", 7, seed=5, size=SIZE, progress=False))
    assert {"scenes/captions.json", "objects/synth_split_train_questions.json", "objects/train.txt"} <= one.keys()
    other = files(generate(tmp_path / "other", 7, seed=6, size=SIZE, progress=False))
    assert other["objects/images/0.png"] != one["objects/images/0.png"]
    assert json.loads(one["scenes/captions.json"])["annotations"]


def test_data_check_on_synthetic_data(root, capsys):
    assert main(["data", "check", str(root), "--format", "levir_cc"]) == 0
    out = capsys.readouterr().out
    assert "train:" in out and "tasks: change_captioning" in out and f"{SIZE}x{SIZE} RGB" in out
    assert "references per sample: min 3" in out and "problems: 0" in out
    assert main(["data", "check", str(root / "objects"), "--format", "rsvqa", "--split", "val"]) == 0
    assert "vqa" in capsys.readouterr().out


def test_data_check_reports_problems_and_nothing_usable(tmp_path, capsys):
    (tmp_path / "forest").mkdir()
    (tmp_path / "forest" / "a.png").write_text("not an image")
    assert main(["data", "check", str(tmp_path), "--format", "class_folders", "--set", "test_frac=0"]) == 0
    out = capsys.readouterr().out
    assert "a.png: not an image" in out and "problems: 1" in out
    assert main(["data", "check", str(tmp_path / "none"), "--format", "rsvqa"]) == 1
    assert "nothing usable" in capsys.readouterr().out
    assert main(["data", "check", str(tmp_path), "--format", "nope"]) == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "check", "--help"])
    assert exit_info.value.code == 0
