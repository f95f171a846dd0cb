"""RSVQA and class-per-folder readers: fixtures written here, tiny."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rsforge.datasets.classification import ClassFoldersDatasetConfig, read_class_folders
from rsforge.datasets.rsvqa import read_rsvqa


def _img(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)


def _rsvqa(root: Path, split: str, questions: list[dict], answers: list[dict]) -> None:
    (root / f"LR_split_{split}_questions.json").write_text(json.dumps({"questions": questions}))
    (root / f"LR_split_{split}_answers.json").write_text(json.dumps({"answers": answers}))


def test_rsvqa_types_inactive_and_problems(tmp_path, caplog):
    _img(tmp_path / "Images_LR" / "0.tif")
    q = [
        {"id": 1, "img_id": 0, "question": "Is there a road?", "type": "presence", "answers_ids": [10], "active": True},
        {"id": 2, "img_id": 0, "question": "How many buildings?", "type": "count", "answers_ids": [11], "active": True},
        {"id": 3, "img_id": 0, "question": "Is it rural?", "type": "rural_urban", "answers_ids": [12], "active": False},
        {"id": 4, "img_id": 5, "question": "Is there water?", "type": "presence", "answers_ids": [13], "active": True},
        {"id": 5, "img_id": 0, "question": "Is there grass?", "type": "presence", "answers_ids": [14], "active": True},
    ]
    a = [{"id": 10, "question_id": 1, "answer": "yes", "active": True},
         {"id": 11, "question_id": 2, "answer": "3", "active": True},
         {"id": 13, "question_id": 4, "answer": "no", "active": True},
         {"id": 14, "question_id": 5, "answer": " ", "active": True}]  # fmt: skip
    _rsvqa(tmp_path, "train", q, a)
    with caplog.at_level(logging.WARNING, logger="rsforge.data"):
        samples = read_rsvqa(tmp_path, "train")
    assert [s.id for s in samples] == ["1", "2"]
    assert [s.meta["question_type"] for s in samples] == ["presence", "count"]
    assert samples[0].conversation[0].text == "Is there a road?" and samples[1].answer == "3"
    assert samples[0].task == "vqa" and samples[0].images[0].endswith("Images_LR/0.tif")
    assert "5.tif: missing image" in caplog.text and "question 5: no non-empty answer" in caplog.text
    assert "skipped 2 of 4 train samples" in caplog.text
    with pytest.raises(ValueError, match=r"no RSVQA split 'test'.*splits found: train"):
        read_rsvqa(tmp_path, "test")


def test_rsvqa_needs_answers_file(tmp_path):
    (tmp_path / "USGS_split_val_questions.json").write_text(json.dumps({"questions": []}))
    with pytest.raises(FileNotFoundError, match=r"USGS_split_val_answers\.json"):
        read_rsvqa(tmp_path, "val")


def _classes(root: Path, counts: dict[str, int]) -> None:
    for cls, n in counts.items():
        for i in range(n):
            _img(root / cls / f"{cls}{i:02d}.png")


def test_seeded_stratified_split(tmp_path):
    _classes(tmp_path, {"forest": 10, "river": 10, "beach": 5})
    splits = {s: read_class_folders(tmp_path, s, val_frac=0.2, test_frac=0.2, seed=3) for s in ("train", "val", "test")}
    ids = [s.id for part in splits.values() for s in part]
    assert len(ids) == len(set(ids)) == 25
    for cls, n in (("forest", 10), ("river", 10), ("beach", 5)):
        assert sum(s.answer == cls for s in splits["test"]) == round(n * 0.2)
    sample = splits["train"][0]
    assert sample.task == "classification" and sample.meta["candidates"] == ["beach", "forest", "river"]
    assert "beach, forest, river" in sample.conversation[0].text and sample.references == [sample.answer]
    again = read_class_folders(tmp_path, "test", val_frac=0.2, test_frac=0.2, seed=3)
    assert [s.id for s in again] == [s.id for s in splits["test"]]
    other = read_class_folders(tmp_path, "test", val_frac=0.2, test_frac=0.2, seed=4)
    assert [s.id for s in other] != [s.id for s in splits["test"]]


def test_list_files_and_problems(tmp_path, caplog):
    _classes(tmp_path, {"farm": 2, "port": 1})
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "train.txt").write_text("farm/farm00.png\nport/port00.png\nport/gone.png\nlake/x.png\n")
    with caplog.at_level(logging.WARNING, logger="rsforge.data"):
        samples = read_class_folders(tmp_path, "train")
    assert [s.id for s in samples] == ["farm/farm00.png", "port/port00.png"]
    assert "gone.png: missing image" in caplog.text and "'lake/x.png' is not <class>/<image>" in caplog.text
    with pytest.raises(ValueError, match="no 'val' split"):
        read_class_folders(tmp_path, "val")


def test_config_fractions():
    with pytest.raises(ValueError, match="val_frac"):
        ClassFoldersDatasetConfig(root="x", val_frac=0.5, test_frac=0.5)
