"""RSVG / DIOR-RSVG boxes and DOTA oriented boxes: fixtures written here, tiny."""

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rsforge.datasets.grounding import read_dota, read_rsvg


def _img(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((50, 60, 3), np.uint8)).save(path)


def _xml(objects: str, filename: str = "00001.jpg") -> str:
    return f"<annotation><filename>{filename}</filename>{objects}</annotation>"


def _obj(name: str, box: tuple, description: str | None) -> str:
    desc = "" if description is None else f"<description>{description}</description>"
    x1, y1, x2, y2 = box
    return (f"<object><name>{name}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>"
            f"<ymax>{y2}</ymax></bndbox>{desc}</object>")  # fmt: skip


@pytest.fixture
def rsvg(tmp_path) -> Path:
    _img(tmp_path / "JPEGImages" / "00001.jpg")
    ann = tmp_path / "Annotations"
    ann.mkdir()
    (ann / "00001.xml").write_text(_xml(
        _obj("vehicle", (10, 5, 20, 15), "a white car on the road")
        + _obj("tank", (1, 2, 3, 4), None)
        + _obj("bridge", (30, 30, 20, 40), "a broken box")
        + _obj("ship", (2.5, 3, 40, 44), "the  ship in the harbour")
    ))  # fmt: skip
    (ann / "00002.xml").write_text("<annotation><filename>")  # unreadable
    (ann / "00003.xml").write_text(_xml(_obj("dam", (1, 1, 5, 5), "a dam"), "gone.jpg"))
    (tmp_path / "train.txt").write_text("00001\n00002\n00003\n")
    (tmp_path / "val.txt").write_text("00001\n")
    return tmp_path


def test_rsvg_samples_per_described_object(rsvg, caplog):
    with caplog.at_level(logging.WARNING, logger="rsforge.data"):
        samples = read_rsvg(rsvg, "train")
    assert [s.id for s in samples] == ["00001#0", "00001#3"]
    car, ship = samples
    assert car.task == "grounding" and car.answer == "[10, 5, 20, 15]" and car.boxes == [[10, 5, 20, 15]]
    assert "a white car on the road" in car.conversation[0].text and car.meta["expression"] == "a white car on the road"
    assert ship.answer == "[2.5, 3, 40, 44]" and ship.meta["expression"] == "the ship in the harbour"
    assert "object 1: no description" in caplog.text and "object 2: no valid bndbox" in caplog.text
    assert "00002.xml: unreadable annotation" in caplog.text and "gone.jpg: missing image" in caplog.text


def test_rsvg_object_index_splits(rsvg):
    (rsvg / "test.txt").write_text("0\n3\n")  # DIOR-RSVG: running object indices
    assert [s.id for s in read_rsvg(rsvg, "test", split_by="object_index")] == ["00001#0", "00001#3"]
    with pytest.raises(ValueError, match="no 'dev' split"):
        read_rsvg(rsvg, "dev")


def test_dota_per_split_folders(tmp_path, caplog):
    _img(tmp_path / "train" / "images" / "P0001.png")
    labels = tmp_path / "train" / "labelTxt"
    labels.mkdir(parents=True)
    (labels / "P0001.txt").write_text(
        "imagesource:GoogleEarth\ngsd:0.146\n"
        "1 2 11 2 11 8 1 8 small-vehicle 0\n"
        "20.5 20 30 22 28 30 19 28 plane 1\n"
        "3 3 9 3 9 7 3 7 small-vehicle 0\n"
        "bad line\n"
    )
    (labels / "P0002.txt").write_text("1 1 2 1 2 2 1 2 ship 0\n")  # no image
    with caplog.at_level(logging.WARNING, logger="rsforge.data"):
        samples = read_dota(tmp_path, "train")
    assert [s.id for s in samples] == ["P0001#plane", "P0001#small-vehicle"]
    plane, cars = samples
    assert plane.task == "oriented_grounding" and plane.answer == "[20.5, 20, 30, 22, 28, 30, 19, 28]"
    assert cars.answer == "[1, 2, 11, 2, 11, 8, 1, 8], [3, 3, 9, 3, 9, 7, 3, 7]" and len(cars.boxes) == 2
    assert "every small vehicle" in cars.conversation[0].text
    assert "P0001.txt:6: not" in caplog.text and "P0002.png: missing image" in caplog.text
    assert [s.id for s in read_dota(tmp_path, "train", max_instances=1)] == ["P0001#plane"]


def test_dota_shared_folder_with_split_lists(tmp_path):
    _img(tmp_path / "images" / "7.png")
    (tmp_path / "labelTxt").mkdir()
    (tmp_path / "labelTxt" / "7.txt").write_text("1 1 4 1 4 4 1 4 building 0\n")
    (tmp_path / "val.txt").write_text("7\n")
    (sample,) = read_dota(tmp_path, "val")
    assert sample.boxes == [[1, 1, 4, 1, 4, 4, 1, 4]]
    with pytest.raises(ValueError, match="no 'train' split"):
        read_dota(tmp_path, "train")
