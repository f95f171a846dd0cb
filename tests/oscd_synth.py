"""Synthetic OSCD for the seed-recipe tests: the synthetic change pairs rewritten in OSCD's release layout
(`rsforge.datasets.multispectral`), one single-band uint16 GeoTIFF per Sentinel-2 band and date, so a
recipe naming `oscd` trains through the real reader, its band stacks and a 13-band stem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from rsforge.datasets.multispectral import OSCD_DATES, OSCD_IMAGES, OSCD_LABELS_DIRS, SENTINEL2_BANDS
from rsforge.datasets.synth.dataset import SynthDatasetConfig, load_synth


def synthetic_oscd(entry: dict, encoder: dict, root: Path, *, n: int, size: int) -> dict:
    """`entry` (a recipe's `oscd` data entry) pointed at OSCD-layout data made from `n` synthetic pairs of
    `size` pixels under `root`. Band b of a date is the scene's colour channel b mod 3, spread around the
    encoder's `mean` by 2 `std` on each side (values as the recipe's statistics expect them, in the
    1/65535 units of the loader), so every band carries the change."""
    bands = entry.get("bands", list(SENTINEL2_BANDS))
    mean, std = np.asarray(encoder["mean"]), np.asarray(encoder["std"])
    out = root / f"oscd-n{n}-{size}px"
    images = out / OSCD_IMAGES
    if not (images / "test.txt").is_file():  # written last: a complete folder
        synth = SynthDatasetConfig(n=n, size=size, root=str(root / f"synth-n{n}-s0-{size}px"))
        for split in ("train", "test"):
            pairs = {s.images: s for s in load_synth(synth, split) if s.mask}  # one per pair, not per caption
            cities = []
            for (before, after), sample in pairs.items():
                city = Path(before).stem
                cities.append(city)
                for date, path in zip(OSCD_DATES, (before, after), strict=True):
                    rgb = np.asarray(Image.open(path).convert("RGB"), np.float64) / 255
                    for i, band in enumerate(bands):
                        value = (mean[i] + (rgb[..., i % 3] - 0.5) * 4 * std[i]).clip(0, 1) * 65535
                        (images / city / date).mkdir(parents=True, exist_ok=True)
                        tifffile.imwrite(images / city / date / f"{band}.tif", value.round().astype(np.uint16))
                label = out / OSCD_LABELS_DIRS[split] / city / "cm"
                label.mkdir(parents=True, exist_ok=True)
                changed = np.asarray(Image.open(sample.mask).convert("L")) > 0
                Image.fromarray(changed.astype(np.uint8) * 255).save(label / "cm.png")
            (images / f"{split}.txt").write_text(",".join(cities))
    return {**entry, "root": str(out), "stack_dir": str(out / "stacks")}
