"""K-class change masks end to end: the LEVIR-MCI and SECOND readers on fixtures in each release's layout,
`SampleDataset` + `collate`, a K-class head's loss, and the class scores."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rsforge.core.interfaces import VisualFeatures
from rsforge.core.sample import Sample, Turn
from rsforge.datasets.images import ImageError, load_mask
from rsforge.datasets.levir import LevirMCIDatasetConfig, load_levir_mci, read_levir_cc
from rsforge.datasets.semantic_change import (
    LEVIR_MCI_CLASSES,
    SECOND_CLASSES,
    SecondDatasetConfig,
    load_second,
    read_second,
)
from rsforge.datasets.torch_dataset import SampleDataset, collate

# SECOND's colours in class order (Bi-SRNet / SCanNet `datasets/RS_ST.py`: ST_COLORMAP, ST_CLASSES).
SECOND_COLOURS = np.array([c["color"] for c in SECOND_CLASSES], np.uint8)


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _image(path: Path, size: int, seed: int) -> Path:
    return _save(path, np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def _ids(size: int, k: int, seed: int) -> np.ndarray:
    """Class ids in 4x4 blocks, so a nearest-neighbour halving keeps every block."""
    blocks = np.random.default_rng(seed).integers(0, k, (size // 4, size // 4))
    return blocks.repeat(4, 0).repeat(4, 1).astype(np.uint8)


def _levir_mci(root: Path, size: int = 16) -> dict[str, np.ndarray]:
    """LEVIR-MCI as released (Change-Agent README: `Levir-MCI-dataset/LevirCCcaptions.json` and
    `images/<split>/{A,B,label}/`; label encoding from `Multi_change/data/LEVIR_MCI.py`: first band
    0 = no change, 128 = road, 255 = building). Returns each file's class ids."""
    entries, ids = [], {}
    for split, n in (("train", 2), ("test", 1)):
        for i in range(1, n + 1):
            name = f"{split}_{i:06d}.png"
            folder = root / "images" / split
            _image(folder / "A" / name, size, i)
            _image(folder / "B" / name, size, i + 10)
            ids[name] = _ids(size, 3, i)
            band = np.array([0, 128, 255], np.uint8)[ids[name]]
            _save(folder / "label" / name, np.stack([band] * 3, -1))  # an RGB PNG, as released
            entries.append({"filepath": split, "filename": name, "split": split, "changeflag": 1,
                            "sentences": [{"raw": f"a road and {k} houses are built"} for k in range(5)]})
    (root / "LevirCCcaptions.json").write_text(json.dumps({"images": entries}))
    return ids


def _second(root: Path, split: str = "train", size: int = 16, index: bool = False) -> dict[str, tuple]:
    """SECOND as released: `<split>/{im1,im2,label1,label2}/<name>.png`, labels RGB-coded (white = no
    change); `index=True`: Bi-SRNet's prepared copy, `label1/` `label2/` holding the ids 0-6."""
    ids = {}
    for i, name in enumerate(("00003.png", "00013.png")):
        _image(root / split / "im1" / name, size, i)
        _image(root / split / "im2" / name, size, i + 5)
        before, after = _ids(size, 7, i), _ids(size, 7, i + 20)
        after[before == 0] = 0  # no change on one date is no change on the other
        before[after == 0] = 0
        for folder, label in (("label1", before), ("label2", after)):
            _save(root / split / folder / name, label if index else SECOND_COLOURS[label])
        ids[name] = (before, after)
    return ids


def test_levir_mci_reads_captions_and_three_class_masks(tmp_path):
    ids = _levir_mci(tmp_path)
    config = LevirMCIDatasetConfig(root=str(tmp_path))
    train, test = load_levir_mci(config, "train"), load_levir_mci(config, "test")
    assert len(train) == 10 and len(test) == 1  # one training sample per reference caption
    (sample,) = test
    assert sample.mask is None and sample.meta["mask_classes"] == LEVIR_MCI_CLASSES
    assert len(sample.references) == 5 and sample.task == "change_captioning"
    classes = sample.meta["mask_classes"]
    assert torch.equal(load_mask(sample.meta["class_mask"], classes=classes), torch.from_numpy(ids[sample.id]).long())


def test_levir_cc_reader_refuses_a_levir_mci_label_by_name(tmp_path, caplog):
    _levir_mci(tmp_path)
    with caplog.at_level(logging.WARNING, logger="rsforge.data"):
        assert read_levir_cc(tmp_path, "test") == []
    assert any("looks like LEVIR-MCI" in r.getMessage() and "levir_mci" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("index", [False, True], ids=["rgb", "index"])
def test_second_one_sample_per_date_with_its_land_cover(tmp_path, index):
    ids = _second(tmp_path, index=index)
    samples = load_second(SecondDatasetConfig(root=str(tmp_path)), "train")
    assert [s.id for s in samples] == ["00003.png#before", "00003.png#after", "00013.png#before", "00013.png#after"]
    for sample in samples:
        before, after = ids[sample.id.split("#")[0]]
        expected = before if sample.meta["date"] == "before" else after
        mask = load_mask(sample.meta["class_mask"], classes=sample.meta["mask_classes"])
        assert mask.dtype == torch.int64 and torch.equal(mask, torch.from_numpy(expected).long())
    assert samples[0].conversation[0].text != samples[1].conversation[0].text  # the prompt names the date
    assert [s.meta["date"] for s in read_second(tmp_path, "train", ("after",))] == ["after", "after"]


def test_second_skips_a_label_off_its_colour_table_and_names_the_colour(tmp_path, caplog):
    _second(tmp_path)
    label = np.array(Image.open(tmp_path / "train" / "label2" / "00013.png"))
    label[0, 0] = (0, 0, 128)  # navy is not SECOND's water (0, 0, 255)
    _save(tmp_path / "train" / "label2" / "00013.png", label)
    with caplog.at_level(logging.WARNING, logger="rsforge.data"):
        samples = read_second(tmp_path, "train")
    assert {s.id.split("#")[0] for s in samples} == {"00003.png"}
    assert any("00013.png" in m and "(0, 0, 128)" in m and "label2" in m for m in caplog.messages)
    with pytest.raises(ValueError, match=r"no 'val' split.*splits found: train"):
        read_second(tmp_path, "val")


def test_load_mask_names_the_file_and_values_off_the_table(tmp_path):
    path = _save(tmp_path / "label.png", np.full((4, 4, 3), 77, np.uint8))
    with pytest.raises(ImageError, match=r"label\.png: label values not in its class table: 77 .*road 128"):
        load_mask(path, classes=LEVIR_MCI_CLASSES)


def _features(batch_size: int) -> VisualFeatures:
    maps = torch.randn(batch_size, 2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    return VisualFeatures(torch.zeros(batch_size, 2, 1, 4), [maps])


def test_k_class_masks_through_dataset_collate_head_loss_and_metrics(tmp_path):
    from rsforge.heads.change_mask import ChangeMaskHead
    from rsforge.heads.configs import ChangeMaskHeadConfig
    from rsforge.tasks.metrics.masks import MaskConfusion

    ids = _second(tmp_path, size=32)
    samples = read_second(tmp_path, "train")
    batch = collate([SampleDataset(samples, image_size=16)[i] for i in range(len(samples))])
    assert batch.masks.dtype == torch.int64 and batch.masks.shape == (4, 16, 16) and batch.mask_valid.all()
    # nearest-neighbour halving of 4x4 blocks keeps every other row and column
    assert torch.equal(batch.masks[0], torch.from_numpy(ids["00003.png"][0][::2, ::2]).long())

    head = ChangeMaskHead(ChangeMaskHeadConfig(name="change_mask", in_channels=[4], num_classes=7, hidden=8))
    logits = head(_features(len(batch)), 16)
    loss = head.loss(logits[batch.mask_valid], batch.masks[batch.mask_valid])
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()

    confusion = MaskConfusion()
    confusion.update_classes(batch.masks, batch.masks, [c["name"] for c in SECOND_CLASSES])
    scores = confusion.compute()
    assert scores["sek"] == pytest.approx(1.0) and scores["miou"] == pytest.approx(1.0)
    assert scores["iou"] == pytest.approx(1.0) and "iou_sports_field" in scores


def test_collate_keeps_binary_masks_and_refuses_to_mix_them_with_class_ids(tmp_path):
    _second(tmp_path)
    (k_class,) = read_second(tmp_path, "train", ("after",))[:1]
    image = str(tmp_path / "train" / "im1" / "00003.png")
    binary = _save(tmp_path / "binary.png", np.eye(16, dtype=np.uint8) * 255)
    plain = Sample("plain", (image, image), [Turn("user", "where")], task="change_mask", mask=str(binary))
    dataset = SampleDataset([plain, k_class], image_size=16)
    assert collate([dataset[0]]).masks.dtype == torch.float32
    with pytest.raises(ValueError, match=r"binary and K-class.*plain \(binary\).*00003\.png#after \(class ids\)"):
        collate([dataset[0], dataset[1]])


@pytest.mark.parametrize(("fmt", "build", "split", "count"),
                         [("second", _second, "train", 4), ("levir_mci", _levir_mci, "test", 1)])
def test_registered_readers_pass_data_check(tmp_path, capsys, fmt, build, split, count):
    from rsforge.core.cli import main

    build(tmp_path)
    assert main(["data", "check", str(tmp_path), "--format", fmt, "--split", split]) == 0
    out = capsys.readouterr().out
    assert f"{split}: {count} samples" in out and "problems: 0" in out
