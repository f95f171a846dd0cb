"""ChangeChat-style conversations and COCO / Karpathy captions: fixtures written here, tiny."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rsforge.datasets.captions import read_coco_captions
from rsforge.datasets.changechat import read_changechat


def _img(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    return path.name


def _chat(id_: str, turns: list[tuple[str, str]], **extra) -> dict:
    return {"id": id_, "image": ["A/x.png", "B/x.png"], **extra,
            "conversations": [{"from": r, "value": v} for r, v in turns]}  # fmt: skip


def test_changechat_multi_turn_split_key_and_problems(tmp_path, caplog):
    _img(tmp_path / "A" / "x.png")
    _img(tmp_path / "B" / "x.png")
    entries = [
        _chat("a", [("human", "<image>\nanything new?"), ("gpt", "yes"), ("human", "how many?"), ("gpt", "2")],
              split="train"),
        _chat("b", [("human", "<image>\nwhat?"), ("gpt", "a road")], split="train", task="change_captioning"),
        _chat("c", [("human", "<image>\nq"), ("gpt", " ")], split="train"),  # empty answer
        {**_chat("d", [("human", "q"), ("gpt", "a")], split="train"), "image": ["A/x.png", "B/missing.png"]},
        _chat("e", [("human", "q"), ("gpt", "a")], split="val"),
    ]  # fmt: skip
    (tmp_path / "conversations.json").write_text(json.dumps(entries))
    with caplog.at_level(logging.WARNING, logger="rsforge.data"):
        train = read_changechat(tmp_path, "train")
    assert [s.id for s in train] == ["a", "b"]
    a = train[0]
    assert a.task == "change_qa" and [t.role for t in a.conversation] == ["user", "assistant"] * 2
    assert a.conversation[0].text.startswith("<image>\n") and a.answer == "2" and a.references == ["2"]
    assert train[1].task == "change_captioning" and len(a.images) == 2 and Path(a.images[0]).is_absolute()
    assert "turn 1 is empty" in caplog.text and "missing.png" in caplog.text
    assert "skipped 2 of 4 train samples" in caplog.text
    assert [s.id for s in read_changechat(tmp_path, "val")] == ["e"]
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        read_changechat(tmp_path, "dev")


def test_changechat_file_per_split(tmp_path):
    _img(tmp_path / "A" / "x.png")
    _img(tmp_path / "B" / "x.png")
    (tmp_path / "test.json").write_text(json.dumps([_chat("t", [("human", "q"), ("gpt", "no")])]))
    assert [s.id for s in read_changechat(tmp_path, "test")] == ["t"]
    with pytest.raises(ValueError, match="no 'train' split"):
        read_changechat(tmp_path, "train")


def test_karpathy_captions_with_references_and_problems(tmp_path, caplog):
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        _img(tmp_path / "RSICD_images" / name)
    images = [
        {"filename": "a.jpg", "split": "train", "sentences": [{"raw": "many planes ."}, {"raw": "an airport ."}]},
        {"filename": "b.jpg", "split": "restval", "sentences": [{"raw": "a river"}]},
        {"filename": "c.jpg", "split": "train", "sentences": [{"raw": "  "}]},  # no caption
        {"filename": "gone.jpg", "split": "train", "sentences": [{"raw": "x"}]},
        {"filename": "a.jpg", "split": "test", "sentences": [{"raw": "a port"}]},
    ]
    (tmp_path / "dataset_rsicd.json").write_text(json.dumps({"images": images}))
    with caplog.at_level(logging.WARNING, logger="rsforge.data"):
        train = read_coco_captions(tmp_path, "train", images_root="RSICD_images")
    assert [s.id for s in train] == ["a.jpg", "b.jpg"]
    assert train[0].references == ["many planes .", "an airport ."] and train[0].task == "captioning"
    assert len(train[0].images) == 1 and train[0].answer == "many planes ."
    assert "gone.jpg: missing image" in caplog.text and "c.jpg: no non-empty caption" in caplog.text
    per_ref = read_coco_captions(tmp_path, "train", images_root="RSICD_images", per_reference=True)
    assert [s.id for s in per_ref] == ["a.jpg#0", "a.jpg#1", "b.jpg#0"]


def test_coco_captions_file_per_split(tmp_path):
    _img(tmp_path / "images" / "1.png")
    coco = {"images": [{"id": 7, "file_name": "1.png"}],
            "annotations": [{"image_id": 7, "caption": "a farm"}, {"image_id": 7, "caption": "fields"}]}  # fmt: skip
    (tmp_path / "captions_val.json").write_text(json.dumps(coco))
    (val,) = read_coco_captions(tmp_path, "val")
    assert val.references == ["a farm", "fields"] and val.images[0].endswith("images/1.png")
    with pytest.raises(FileNotFoundError, match="no captions file"):
        read_coco_captions(tmp_path, "train")


def test_coco_single_file_needs_split_field(tmp_path):
    _img(tmp_path / "1.png")
    coco = {"images": [{"id": 1, "file_name": "1.png"}], "annotations": [{"image_id": 1, "caption": "c"}]}
    (tmp_path / "annotations.json").write_text(json.dumps(coco))
    with pytest.raises(ValueError, match="without a 'split' field"):
        read_coco_captions(tmp_path, "train")
