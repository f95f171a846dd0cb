"""Scene classification from class-per-folder layouts (UCM, AID, EuroSAT): `<root>/<class>/<image>`.

Splits: `<root>/list/<split>.txt` listing `<class>/<image>` paths when the folder `list/` exists;
otherwise a seeded stratified split of every class's images (`val_frac`, `test_frac`, `seed`):
each class's files are shuffled with a generator seeded from (`seed`, class name), so adding a class
does not reshuffle the others. The prompt carries the candidate class list (`meta["candidates"]`,
all class folders in sorted order); the answer is the class folder's name, and `meta["label"]` its
index in the candidates, the target of a `classifier` head.
"""

from __future__ import annotations

import random
from pathlib import Path

from pydantic import Field, model_validator

from rsforge.core.configs import DatasetConfig
from rsforge.core.sample import META_CANDIDATES, META_LABEL, Sample, Turn
from rsforge.datasets.common import IMAGE_SUFFIXES, SPLITS, Skips, log, no_split, read_lines
from rsforge.datasets.prompts import prompt_for

LIST_DIR = "list"


def _classes(root: Path) -> list[str]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != LIST_DIR)
    if not classes:
        raise ValueError(f"{root}: no class folders (expected <root>/<class>/<image>)")
    return classes


def _images(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _seeded_split(root: Path, classes: list[str], split: str, val_frac: float, test_frac: float,
                  seed: int) -> list[str]:
    chosen = []
    for cls in classes:
        files = _images(root / cls)
        if not files:
            log.warning("%s: class folder without images", root / cls)
        random.Random(f"{seed}:{cls}").shuffle(files)  # str seeds hash the same in every process
        n_test, n_val = round(len(files) * test_frac), round(len(files) * val_frac)
        part = {"test": files[:n_test], "val": files[n_test : n_test + n_val], "train": files[n_test + n_val :]}
        chosen += [f"{cls}/{f}" for f in sorted(part[split])]
    return chosen


def read_class_folders(
    root: str | Path, split: str, *, val_frac: float = 0.1, test_frac: float = 0.2, seed: int = 0
) -> list[Sample]:
    root = Path(root).resolve()
    classes = _classes(root)
    list_file = root / LIST_DIR / f"{split}.txt"
    if (root / LIST_DIR).is_dir():
        if not list_file.is_file():
            raise no_split(root, split, str(list_file), sorted(p.stem for p in (root / LIST_DIR).glob("*.txt")))
        entries, source = read_lines(list_file), list_file
    elif split in SPLITS:
        entries, source = _seeded_split(root, classes, split, val_frac, test_frac, seed), root
    else:
        raise no_split(root, split, f"{list_file} (else a seeded split into {', '.join(SPLITS)})", SPLITS)
    prompt = prompt_for("classification", candidates=classes)
    skips, samples = Skips(source, split), []
    for entry in entries:
        cls, _, name = entry.replace("\\", "/").partition("/")
        if cls not in classes or not name:
            skips.skip(source, f"{entry!r} is not <class>/<image> with a known class")
            continue
        image = root / cls / name
        if not image.is_file():
            skips.skip(image, f"missing image ({source})")
            continue
        samples.append(
            Sample(
                id=f"{cls}/{name}",
                images=(str(image),),
                conversation=[Turn("user", prompt), Turn("assistant", cls)],
                task="classification",
                references=[cls],
                meta={META_CANDIDATES: list(classes), META_LABEL: classes.index(cls)},
            )
        )
    skips.summary(len(entries))
    return samples


class ClassFoldersDatasetConfig(DatasetConfig):
    """Class-per-folder scene classification (module docstring); the fractions and seed apply when
    there is no `list/` folder."""

    name: str = "class_folders"
    root: str
    val_frac: float = Field(0.1, ge=0, lt=1)
    test_frac: float = Field(0.2, ge=0, lt=1)
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _fractions(self) -> ClassFoldersDatasetConfig:
        if self.val_frac + self.test_frac >= 1:
            raise ValueError(f"val_frac + test_frac must be < 1, got {self.val_frac} + {self.test_frac}")
        return self


def load_class_folders(config: ClassFoldersDatasetConfig, split: str) -> list[Sample]:
    return read_class_folders(
        config.root, split, val_frac=config.val_frac, test_frac=config.test_frac, seed=config.seed
    )
