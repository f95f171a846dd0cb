"""The `synth` dataset: generate once per parameter set, then read through any public-format reader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field

from rsforge.core.configs import DatasetConfig
from rsforge.core.sample import Sample
from rsforge.datasets.levir import read_levir_cc
from rsforge.datasets.synth.writer import MIN_SIZE, generate, synth_params

# ------------------------------------------------------------------------------ dataset registry
SynthFormat = Literal["levir_cc", "changechat", "coco_captions", "class_folders", "rsvqa", "rsvg", "dota"]


class SynthDatasetConfig(DatasetConfig):
    """The synthetic dataset, generated on first use into `root` (default
    `data/synth-n{n}-s{seed}-{size}px` under the working directory) and reused while it matches.
    `format` picks the part read, by the name of its reader: "levir_cc" (change captions, the
    default), "changechat" (change QA), "coco_captions" / "class_folders" (land-cover scenes),
    "rsvqa" / "rsvg" / "dota" (objects scenes)."""

    name: str = "synth"
    n: int = Field(600, ge=1)
    seed: int = Field(0, ge=0)
    size: int = Field(64, ge=MIN_SIZE)
    root: str | None = None
    format: SynthFormat = "levir_cc"


def _cached(root: Path, params: dict) -> bool:
    try:
        found = json.loads((root / "synth.json").read_text())
    except (OSError, ValueError):
        return False
    return {k: found.get(k) for k in params} == params


def load_synth(config: SynthDatasetConfig, split: str) -> list[Sample]:
    """Samples of `split` through the reader of `config.format`; captions for training come one
    sample per reference."""
    from rsforge.datasets import captions, changechat, classification, grounding, rsvqa

    root = Path(config.root or f"data/synth-n{config.n}-s{config.seed}-{config.size}px")
    params = synth_params(config.n, config.seed, config.size)
    if not _cached(root, params):
        # A folder the user named is their data: never regenerate it behind their back.
        if config.root is not None and (root / "synth.json").is_file():
            found = json.loads((root / "synth.json").read_text())
            differs = {k: (found.get(k), v) for k, v in params.items() if found.get(k) != v}
            raise ValueError(
                f"{root} holds a synthetic dataset made with other parameters (found, asked): {differs}; "
                "set n/seed/size to match it, or give another root"
            )
        generate(root, config.n, config.seed, config.size)
    train = split == "train"
    readers = {
        "levir_cc": lambda: read_levir_cc(root, split, per_reference=train),
        "changechat": lambda: changechat.read_changechat(root, split),
        "coco_captions": lambda: captions.read_coco_captions(root / "scenes", split, per_reference=train),
        "class_folders": lambda: classification.read_class_folders(root / "scenes", split),
        "rsvqa": lambda: rsvqa.read_rsvqa(root / "objects", split),
        "rsvg": lambda: grounding.read_rsvg(root / "objects", split),
        "dota": lambda: grounding.read_dota(root / "objects", split),
    }
    return readers[config.format]()
