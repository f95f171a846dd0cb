"""Every seed recipe: each `recipes/*.yaml` assembles on the meta device (what `rsforge recipe check`
does), and each `recipes/*-tiny.yaml` trains a few steps on synthetic data with the kernel's pure-torch
steps (no Ray) until its loss falls, then answers in text or predicts a mask. Recipes are found by glob,
so a new seed recipe is covered the day it lands."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from rsforge.core.model import RSForgeModel
from rsforge.core.recipe import load_recipe, parse_recipe
from rsforge.datasets.loading import load_split, training_texts
from rsforge.datasets.torch_dataset import SampleDataset, collate
from rsforge.train.steps import build_optimizer, build_scheduler, seed_everything, sft_step

from .oscd_synth import synthetic_oscd

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
ALL = sorted(RECIPES.glob("*.yaml"))
TINY = sorted(RECIPES.glob("*-tiny.yaml"))
# A few steps over the same BATCHES batches of BATCH_SIZE (fitting them is the clearest sign that every part
# trains); the loss falls: the mean of the last WINDOW steps is below the mean of the first WINDOW.
STEPS, WINDOW, BATCHES, BATCH_SIZE = 10, 2, 2, 4
MAX_SAMPLES = 40  # synthetic pairs generated per dataset, whatever size the recipe trains at


def test_the_seed_recipes_are_found():
    names = {p.name for p in TINY}
    assert {"aerith-tiny.yaml", "segchange-tiny.yaml", "terrasense-tiny.yaml"} <= names
    assert {p.name.replace("-tiny", "") for p in TINY} <= {p.name for p in ALL}  # every tiny twin has a full size


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_recipe_assembles_on_meta(path, plugins):
    recipe = load_recipe(path, plugins.registry)
    model = RSForgeModel.from_recipe(recipe, plugins, device="meta")
    rows = model.parameter_counts()
    assert rows and all(total > 0 for _, _, total, _ in rows), rows
    assert sum(trainable for *_, trainable in rows) > 0, f"{path.name}: nothing trains"


def _small_data(raw: dict, root: Path) -> dict:
    """The recipe with its synthetic datasets capped at MAX_SAMPLES and generated under `root` (shared by
    recipes that ask for the same parameters), so the test neither writes into the repo nor waits on a
    full-size dataset. Folders of real change masks (`levir_cd`, absent on a test machine) become one
    synthetic set of pairs at least as large as the recipe's training crop; an `oscd` entry becomes those
    pairs as 13-band OSCD band files (`tests/oscd_synth.py`)."""
    entries = raw.get("data") or []
    entries = [entries] if isinstance(entries, dict) else entries
    if any(entry.get("name") == "levir_cd" for entry in entries):
        size = max(64, (raw.get("train") or {}).get("crop") or 0)
        entries = [e for e in entries if e.get("name") != "levir_cd"] + [{"name": "synth", "size": size}]
    small = []
    for entry in entries:
        if entry.get("name") == "oscd":
            size = max(64, (raw.get("train") or {}).get("crop") or 0)
            entry = synthetic_oscd(entry, raw["encoder"], root, n=MAX_SAMPLES, size=size)
        if entry.get("name") == "synth":
            entry = {**entry, "n": min(entry.get("n", MAX_SAMPLES), MAX_SAMPLES)}
            entry["root"] = str(root / f"synth-n{entry['n']}-s{entry.get('seed', 0)}-{entry.get('size', 64)}px")
        small.append(entry)
    return {**raw, "data": small}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("seed-data")


@pytest.mark.parametrize("path", TINY, ids=[p.stem for p in TINY])
def test_tiny_recipe_trains_and_answers(path, plugins, data_root):
    raw = _small_data(yaml.safe_load(path.read_text()), data_root)
    recipe = parse_recipe(raw, plugins.registry, source=str(path))
    samples = load_split(recipe, plugins, "train")
    recipe = recipe.prepared(training_texts(samples))
    seed_everything(recipe.train.seed)
    model = RSForgeModel.from_recipe(recipe, plugins)
    dataset = SampleDataset(samples, model.image_size, model.interpolation, channels=model.in_chans)
    loader = DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True, collate_fn=collate, drop_last=True,
                        generator=torch.Generator().manual_seed(recipe.train.seed))
    batches = list(itertools.islice(loader, BATCHES))
    optimizer = build_optimizer(model, recipe.train)
    scheduler = build_scheduler(optimizer, recipe.train, total_steps=STEPS)
    losses = [sft_step(model, batch, optimizer, scheduler, grad_clip=recipe.train.grad_clip)["loss"]
              for batch in itertools.islice(itertools.cycle(batches), STEPS)]
    first, last = sum(losses[:WINDOW]) / WINDOW, sum(losses[-WINDOW:]) / WINDOW
    assert last < first, f"{path.name}: loss did not fall: {[round(x, 3) for x in losses]}"

    model.eval()
    batch = batches[0]
    images = batch.images[:2]
    if model.decoder is None:
        masks = model.predict_mask(images[:, 0], images[:, 1], instructions=batch.instructions[:2])
        assert masks.shape == (2, model.image_size, model.image_size) and masks.dtype == torch.bool
        return
    texts = model.generate(images, batch.prompts[:2], max_new_tokens=6).texts
    # After ten steps an answer may still be empty (end of text first), so only the contract is checked.
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_segchange_mask_head_reads_the_bev_aligned_maps(plugins):
    raw = yaml.safe_load((RECIPES / "segchange-tiny.yaml").read_text())
    torch.manual_seed(0)
    model = RSForgeModel.from_recipe(parse_recipe({**raw, "data": []}, plugins.registry), plugins).eval()
    images = torch.rand(2, 2, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(0))
    before = model.mask_logits(images, ["new buildings", "new buildings"])
    with torch.no_grad():  # the bridge emits no tokens (tokens: false): its maps are its only way to the head
        model.bridges[0].align[-1].to_out.weight.mul_(2)
    assert not torch.allclose(model.mask_logits(images, ["new buildings", "new buildings"]), before)
