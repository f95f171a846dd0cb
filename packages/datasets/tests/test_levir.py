import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from rsforge.core.sample import DEFAULT_MASK_PROMPT, Turn
from rsforge.datasets.levir import LevirCCDatasetConfig, load_levir_cc, read_levir_cc, read_levir_cd
from rsforge.datasets.prompts import prompt_for
from rsforge.datasets.synth import generate

SIZE = 32


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("levir") / "synth", 20, seed=1, size=SIZE, progress=False)


@pytest.fixture(scope="module")
def synth_captions(synth_root) -> list[dict]:
    return json.loads((synth_root / "captions.json").read_text())["images"]


def _png(path: Path, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def _entry(split: str, filename: str, texts: list[str], imgid: int, **extra) -> dict:
    sentences = [{"raw": " " + t + " ", "tokens": t.split(), "imgid": imgid} for t in texts]
    return {
        "filepath": split,
        "filename": filename,
        "split": split,
        "imgid": imgid,
        "sentences": sentences,
        **extra,
    }


@pytest.fixture
def real_layout(tmp_path) -> Path:
    """A tiny LEVIR-CC in the official layout: LevirCCcaptions.json + images/<split>/{A,B}/."""
    root = tmp_path / "LEVIR-CC"
    for name in ("train_000001.png", "train_000003.png", "test_000001.png"):
        split = name.split("_")[0]
        _png(root / "images" / split / "A" / name)
        _png(root / "images" / split / "B" / name, 90)
    _png(root / "images" / "train" / "A" / "train_000002.png")  # its B image is missing
    entries = [
        _entry("train", "train_000001.png", ["a road was built", "there is a new road"], 0, changeflag=1),
        _entry("train", "train_000002.png", ["two houses were built"], 1, changeflag=1),
        _entry("train", "train_000003.png", ["", "  "], 2, changeflag=1),
        _entry("test", "test_000001.png", ["the scene is the same as before"], 3),
    ]
    (root / "LevirCCcaptions.json").write_text(json.dumps({"images": entries}))
    return root


def test_reads_synthetic_output(synth_root, synth_captions):
    samples = read_levir_cc(synth_root, "val")
    entries = [e for e in synth_captions if e["split"] == "val"]
    assert [s.id for s in samples] == [e["filename"] for e in entries]
    for s, e in zip(samples, entries, strict=True):
        refs = [x["raw"].strip() for x in e["sentences"]]
        assert s.references == refs and s.answer == refs[0]
        assert s.conversation == [Turn("user", prompt_for("change_captioning")), Turn("assistant", refs[0])]
        assert s.images == (str(synth_root / "val" / "A" / s.id), str(synth_root / "val" / "B" / s.id))
        assert s.mask == str(synth_root / "val" / "label" / s.id)
        assert s.changed is bool(e["changeflag"]) and s.task == "change_captioning"


def test_per_reference_expansion(synth_root, synth_captions):
    samples = read_levir_cc(synth_root, "train", per_reference=True)
    entries = [e for e in synth_captions if e["split"] == "train"]
    assert len(samples) == sum(len(e["sentences"]) for e in entries)
    first = entries[0]
    mine = [s for s in samples if s.id.startswith(first["filename"] + "#")]
    refs = [x["raw"].strip() for x in first["sentences"]]
    assert [s.id for s in mine] == [f"{first['filename']}#{k}" for k in range(len(refs))]
    assert [s.answer for s in mine] == refs
    assert all(s.references == refs for s in mine)


def test_real_layout_skips_and_reports_bad_samples(real_layout, caplog):
    with caplog.at_level(logging.WARNING, logger="rsforge.data"):
        samples = read_levir_cc(real_layout, "train")
    assert [s.id for s in samples] == ["train_000001.png"]
    s = samples[0]
    assert s.images[0] == str(real_layout / "images" / "train" / "A" / "train_000001.png")
    assert s.references == ["a road was built", "there is a new road"]  # whitespace stripped
    assert s.mask is None and s.changed is True
    text = caplog.text
    assert str(real_layout / "images" / "train" / "B" / "train_000002.png") in text
    assert (
        str(real_layout / "images" / "train" / "A" / "train_000003.png") in text
        and "no non-empty caption" in text
    )
    assert "skipped 2 of 3 train samples" in text
    assert all(r.name == "rsforge.data" for r in caplog.records)


def test_missing_changeflag_is_none(real_layout):
    (sample,) = read_levir_cc(real_layout, "test")
    assert sample.changed is None and sample.answer == "the scene is the same as before"


def test_unknown_split(real_layout):
    with pytest.raises(ValueError, match="unknown split 'training'; known splits: test, train, val"):
        read_levir_cc(real_layout, "training")


def test_explicit_captions_file_and_images_root(real_layout, tmp_path):
    moved = tmp_path / "elsewhere.json"
    moved.write_text((real_layout / "LevirCCcaptions.json").read_text())
    (sample,) = read_levir_cc(tmp_path, "test", captions_file=moved, images_root=real_layout / "images")
    assert sample.images[1] == str(real_layout / "images" / "test" / "B" / "test_000001.png")
    with pytest.raises(FileNotFoundError, match="no LEVIR-CC captions file"):
        read_levir_cc(tmp_path / "empty", "train")
    with pytest.raises(FileNotFoundError, match=r"nope\.json"):
        read_levir_cc(real_layout, "train", captions_file="nope.json")


def test_not_a_captions_file(tmp_path):
    (tmp_path / "captions.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a LEVIR-CC captions file"):
        read_levir_cc(tmp_path, "train")


def test_read_levir_cd_split_folders(synth_root):
    samples = read_levir_cd(synth_root, "test")
    names = (synth_root / "list" / "test.txt").read_text().split()
    assert [s.id for s in samples] == names
    prompts = dict(
        line.split("  ", 1) for line in (synth_root / "test" / "prompts.txt").read_text().splitlines()
    )
    for s in samples:
        assert s.task == "change_mask" and s.answer is None
        assert s.mask == str(synth_root / "test" / "label" / s.id)
        assert s.conversation == [Turn("user", prompts[s.id])]


def test_read_levir_cd_flat_layout_with_lists(tmp_path, caplog):
    root = tmp_path / "cd"
    for name in ("a.png", "b.png", "c.png"):
        _png(root / "A" / name)
        _png(root / "B" / name)
    _png(root / "label" / "a.png", 255)
    (root / "list").mkdir()
    (root / "list" / "train.txt").write_text("a.png\nb.png\n\n")
    (root / "list" / "val.txt").write_text("c.png\nmissing.png\n")
    with caplog.at_level(logging.WARNING, logger="rsforge.data"):
        train = read_levir_cd(root, "train")
        val = read_levir_cd(root, "val")
    # A labelled split: a pair without its label is a data problem, reported by name and skipped.
    assert [(s.id, s.mask) for s in train] == [("a.png", str(root / "label" / "a.png"))]
    assert train[0].conversation == [Turn("user", DEFAULT_MASK_PROMPT)]  # what a text-guided head defaults to
    assert val == []
    assert "b.png" in caplog.text and "c.png" in caplog.text
    assert str(root / "A" / "missing.png") in caplog.text
    with pytest.raises(ValueError, match=r"no LEVIR-CD split 'test'.*splits found: train, val"):
        read_levir_cd(root, "test")


def test_levir_cc_config_and_factory(real_layout):
    config = LevirCCDatasetConfig(root=str(real_layout))
    assert config.name == "levir_cc"
    train = load_levir_cc(config, "train")
    assert [s.id for s in train] == ["train_000001.png#0", "train_000001.png#1"]
    assert [s.id for s in load_levir_cc(config, "test")] == ["test_000001.png"]
    with pytest.raises(ValidationError):
        LevirCCDatasetConfig(root="x", caption_file="typo.json")
    with pytest.raises(ValidationError):
        LevirCCDatasetConfig()
