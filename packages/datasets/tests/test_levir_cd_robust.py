"""read_levir_cd skips unusable pairs by name, counts them, and goes on with the rest."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from rsforge.datasets.levir import read_levir_cd


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _pair(base: Path, name: str, size: tuple[int, int] = (16, 16), label: np.ndarray | None = None,
          parts: tuple[str, ...] = ("A", "B", "label")) -> None:  # fmt: skip
    rgb = np.full((*size, 3), 100, np.uint8)
    for part in parts:
        if part == "label":
            _save(base / part / name, np.zeros(size, np.uint8) if label is None else label)
        else:
            _save(base / part / name, rgb)


def test_bad_pairs_are_skipped_by_name_and_counted(tmp_path, caplog):
    base = tmp_path / "LEVIR-CD" / "train"
    _pair(base, "good_255.png", label=np.where(np.eye(16, dtype=bool), 255, 0).astype(np.uint8))
    _pair(base, "good_01.png", label=np.eye(16, dtype=np.uint8))
    _pair(base, "no_b.png", parts=("A", "label"))
    _pair(base, "no_label.png", parts=("A", "B"))
    _pair(base, "grey_label.png", label=np.full((16, 16), 128, np.uint8))
    _pair(base, "sizes.png")
    _save(base / "B" / "sizes.png", np.zeros((16, 20, 3), np.uint8))
    _pair(base, "label_size.png")
    _save(base / "label" / "label_size.png", np.zeros((8, 8), np.uint8))
    (base / "B" / "corrupt.png").parent.mkdir(parents=True, exist_ok=True)
    _pair(base, "corrupt.png")
    (base / "B" / "corrupt.png").write_bytes(b"not a png")

    with caplog.at_level(logging.WARNING, logger="rsforge.data"):
        samples = read_levir_cd(tmp_path / "LEVIR-CD", "train")

    assert sorted(s.id for s in samples) == ["good_01.png", "good_255.png"]
    warnings = {r.getMessage() for r in caplog.records if r.name == "rsforge.data"}
    expected = {
        "no_b.png": "has no B file",
        "no_label.png": "has no label file",
        "grey_label.png": "only 0/255 or 0/1, found values 128",
        "sizes.png": "sizes differ (A 16x16, B 20x16, label 16x16)",
        "label_size.png": "label 8x8",
        "corrupt.png": "corrupt.png",
    }
    for name, reason in expected.items():
        assert any(name in w and reason in w and "skipped" in w for w in warnings), (name, warnings)
    assert any("skipped 6 of 8 train samples" in w for w in warnings)


def test_split_without_label_folder_keeps_pairs_without_masks(tmp_path, caplog):
    base = tmp_path / "cd" / "test"
    _pair(base, "a.png", parts=("A", "B"))
    with caplog.at_level(logging.WARNING, logger="rsforge.data"):
        samples = read_levir_cd(tmp_path / "cd", "test")
    assert [(s.id, s.mask) for s in samples] == [("a.png", None)]
    assert "no label folder" in caplog.text and "skipped" not in caplog.text


def test_list_layout_with_prompts_still_reads(tmp_path):
    root = tmp_path / "cd"
    _pair(root, "x.png")
    _pair(root, "y.png", parts=("A",))
    (root / "list").mkdir()
    (root / "list" / "val.txt").write_text("x.png\ny.png\n")
    (root / "prompts.txt").write_text("x.png  new buildings in the north\n")
    samples = read_levir_cd(root, "val")
    assert [s.id for s in samples] == ["x.png"]
    assert samples[0].conversation[0].text == "new buildings in the north"
