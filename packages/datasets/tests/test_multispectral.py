"""Multispectral readers (OSCD, EuroSAT MS) on fixtures in their release layouts, and 13 bands end to end:
stacks read as their band files do, through SampleDataset, collate, a 13-band timm stem and a change-mask head."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml
from PIL import Image
from pydantic import ValidationError

from rsforge.core.model import RSForgeModel
from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import AugmentConfig, parse_recipe
from rsforge.datasets.classification import read_class_folders
from rsforge.datasets.images import ImageError, load_image, load_mask
from rsforge.datasets.multispectral import (
    EUROSAT_MS_BANDS,
    OSCD_IMAGES,
    SENTINEL2_BANDS,
    OscdDatasetConfig,
    read_eurosat_ms,
    read_oscd,
    shown_bands,
)
from rsforge.datasets.torch_dataset import SampleDataset, collate

RECIPE = Path(__file__).resolve().parents[3] / "recipes" / "oscd-ms-tiny.yaml"
LABELS = "Onera Satellite Change Detection dataset - Train Labels"


def _oscd(tmp_path: Path, sizes: dict[str, tuple[int, int]], *, tif_label: frozenset = frozenset()) -> Path:
    """OSCD as released (Caye Daudt et al. 2018, https://rcdaudt.github.io/oscd/; the layout read by
    rcdaudt/fully_convolutional_change_detection and torchgeo's OSCD): "<...> - Images/train.txt" (cities,
    comma-separated), "<city>/imgs_{1,2}_rect/B01.tif ... B12.tif, B8A.tif" (uint16, one band each, all on
    the 10 m grid), "<city>/dates.txt", and "<...> - Train Labels/<city>/cm/cm.png" (0/255) or, for the
    cities in `tif_label`, only "cm/<city>-cm.tif" (1 = no change, 2 = change)."""
    rng = np.random.default_rng(0)
    images = tmp_path / OSCD_IMAGES
    for city, (height, width) in sizes.items():
        for date in ("imgs_1_rect", "imgs_2_rect"):
            (images / city / date).mkdir(parents=True)
            for band in SENTINEL2_BANDS:
                values = rng.integers(0, 10000, (height, width), dtype=np.uint16)  # reflectance x 10000
                tifffile.imwrite(images / city / date / f"{band}.tif", values)
        (images / city / "dates.txt").write_text("date_1: 20151126\ndate_2: 20170723\n")
        changed = rng.random((height, width)) < 0.2
        (tmp_path / LABELS / city / "cm").mkdir(parents=True)
        if city in tif_label:
            tifffile.imwrite(tmp_path / LABELS / city / "cm" / f"{city}-cm.tif", (changed + 1).astype(np.uint8))
        else:
            Image.fromarray(changed.astype(np.uint8) * 255).save(tmp_path / LABELS / city / "cm" / "cm.png")
    (images / "train.txt").write_text(",".join(sizes))
    return tmp_path


def test_oscd_stacks_13_bands_read_as_their_band_files(tmp_path):
    root = _oscd(tmp_path, {"beirut": (20, 24), "rennes": (18, 30)}, tif_label=frozenset({"rennes"}))
    samples = read_oscd(root, "train", stack_dir=tmp_path / "stacks")
    assert [s.id for s in samples] == ["beirut", "rennes"]
    beirut = samples[0]
    assert beirut.task == "change_mask" and beirut.meta["bands"] == list(SENTINEL2_BANDS)
    assert beirut.meta["dates"] == {"date_1": "20151126", "date_2": "20170723"}
    for stack, date in zip(beirut.images, ("imgs_1_rect", "imgs_2_rect"), strict=True):
        bands = load_image(stack, channels=13)
        assert bands.shape == (13, 20, 24)
        for i, band in enumerate(SENTINEL2_BANDS):  # the one scaling: value / 65535, as each band file reads
            assert torch.equal(bands[i], load_image(root / OSCD_IMAGES / "beirut" / date / f"{band}.tif")[0])
    assert beirut.mask == str(root / LABELS / "beirut" / "cm" / "cm.png")
    # OSCD's own 1/2 label, mapped by name: 2 (change) -> 1, 1 (no change) -> 0
    raw = tifffile.imread(root / LABELS / "rennes" / "cm" / "rennes-cm.tif")
    assert torch.equal(load_mask(samples[1].mask), torch.from_numpy((raw == 2).astype(np.float32)))


def test_oscd_band_order_and_stack_reuse(tmp_path):
    root = _oscd(tmp_path, {"paris": (16, 16)})
    first = read_oscd(root, "train", bands=EUROSAT_MS_BANDS, stack_dir=tmp_path / "stacks")[0]
    stack = Path(first.images[0])
    assert torch.equal(load_image(stack, channels=13)[-1],
                       load_image(root / OSCD_IMAGES / "paris" / "imgs_1_rect" / "B8A.tif")[0])  # B8A last
    written = stack.stat().st_mtime_ns
    read_oscd(root, "train", bands=EUROSAT_MS_BANDS, stack_dir=tmp_path / "stacks")
    assert stack.stat().st_mtime_ns == written  # up to date: not rewritten
    band = root / OSCD_IMAGES / "paris" / "imgs_1_rect" / "B01.tif"
    os.utime(band, ns=(written + 10**9, written + 10**9))
    read_oscd(root, "train", bands=EUROSAT_MS_BANDS, stack_dir=tmp_path / "stacks")
    assert stack.stat().st_mtime_ns > written  # a newer band file: stacked again
    with pytest.raises(ValidationError, match=r"unknown: \['B13'\]"):
        OscdDatasetConfig(root=str(root), bands=["B01", "B13"])


def test_oscd_bad_cities_are_named_and_skipped(tmp_path, caplog):
    root = _oscd(tmp_path, {"good": (12, 12), "noband": (12, 12), "odd": (12, 12), "bad": (12, 12)},
                 tif_label=frozenset({"bad"}))
    (root / OSCD_IMAGES / "noband" / "imgs_2_rect" / "B09.tif").unlink()
    tifffile.imwrite(root / OSCD_IMAGES / "odd" / "imgs_1_rect" / "B05.tif", np.zeros((6, 6), np.uint16))
    tifffile.imwrite(root / LABELS / "bad" / "cm" / "bad-cm.tif", np.full((12, 12), 3, np.uint8))
    with caplog.at_level(logging.WARNING, logger="rsforge.data"):
        samples = read_oscd(root, "train", stack_dir=tmp_path / "stacks")
    assert [s.id for s in samples] == ["good"]
    assert "noband/imgs_2_rect/B09.tif: missing band file of noband" in caplog.text
    assert "B05.tif: 6x6 uint16, but B01.tif is 12x12 uint16" in caplog.text
    assert "values [3] outside OSCD's 1 (no change) / 2 (change)" in caplog.text
    assert "skipped 3 of 4 train samples" in caplog.text
    with pytest.raises(ValueError, match=r"no 'val' split .* splits found: train"):
        read_oscd(root, "val", stack_dir=tmp_path / "stacks")


def _eurosat_ms(tmp_path: Path, per_class: int = 5) -> Path:
    """EuroSAT MS as released (Helber et al. 2019, EuroSAT_MS.zip; band order as torchgeo's EuroSAT reads
    it): "EuroSAT_MS/<Class>/<Class>_<n>.tif", 64x64 uint16 GeoTIFFs of 13 bands, pixel-interleaved as
    GDAL writes them by default."""
    rng = np.random.default_rng(1)
    root = tmp_path / "EuroSAT_MS"
    for cls in ("AnnualCrop", "Forest", "SeaLake"):
        (root / cls).mkdir(parents=True)
        for n in range(1, per_class + 1):
            tifffile.imwrite(root / cls / f"{cls}_{n}.tif", rng.integers(0, 4000, (64, 64, 13), dtype=np.uint16),
                             photometric="minisblack", planarconfig="contig")
    return root


def test_eurosat_ms_scenes_split_as_class_folders(tmp_path):
    root = _eurosat_ms(tmp_path)
    for split in ("train", "val", "test"):
        samples = read_eurosat_ms(root, split)
        assert [s.id for s in samples] == [s.id for s in read_class_folders(root, split)]
        assert all(s.meta["bands"] == list(EUROSAT_MS_BANDS) for s in samples)
    sample = read_eurosat_ms(root, "train")[0]
    assert sample.references == ["AnnualCrop"] and sample.meta["candidates"] == ["AnnualCrop", "Forest", "SeaLake"]
    assert load_image(sample.images[0], 32, channels=13).shape == (13, 32, 32)
    with pytest.raises(ImageError, match=r"AnnualCrop_.*tif: 13 band\(s\), the model takes 4"):
        load_image(sample.images[0], channels=4)


def test_13_band_pair_trains_through_the_stem_and_the_mask_head(tmp_path):
    root = _oscd(tmp_path, {"beirut": (40, 48), "rennes": (36, 36)})
    samples = read_oscd(root, "train", stack_dir=tmp_path / "stacks")
    plugins = PluginManager()
    raw = yaml.safe_load(RECIPE.read_text())
    recipe = parse_recipe({**raw, "data": [{"name": "oscd", "root": str(root)}]}, plugins.registry)
    torch.manual_seed(0)
    model = RSForgeModel.from_recipe(recipe, plugins)
    assert model.in_chans == 13 and model.image_size == 64
    augment = AugmentConfig(hflip=0.5, rot90=True, brightness=0.2, contrast=0.2, gamma=(0.8, 1.25))
    views = SampleDataset(samples, model.image_size, model.interpolation, crop=32, augment=augment,
                          channels=model.in_chans)
    batch = collate([views[0], views[1]])
    assert batch.images.shape == (2, 2, 13, 64, 64) and batch.masks.shape == (2, 64, 64)
    assert 0 <= batch.images.min() and batch.images.max() <= 1
    losses = model(batch)
    assert torch.isfinite(losses.total) and "mask_change_mask" in losses.heads
    losses.total.backward()
    stem = model.encoder.backbone.conv1  # timm's resnet stem, built for in_chans bands
    assert stem.weight.shape[1] == 13 and stem.weight.grad.abs().sum() > 0
    whole = SampleDataset(samples, model.image_size, model.interpolation, channels=model.in_chans)[0]["images"]
    assert whole.shape == (2, 13, 64, 64)
    assert torch.equal(shown_bands(whole[0], samples[0].meta["bands"]), whole[0, [3, 2, 1]])  # B04 B03 B02
    with pytest.raises(ValueError, match="saturation and hue are RGB colour changes; the model takes 13 bands"):
        SampleDataset(samples, 64, augment=AugmentConfig(saturation=0.2), channels=13)
