"""Every trainable recipe in `recipes/` trains with one and with two workers.

The workers are real DistributedDataParallel processes (gloo, on the CPU), each preparing the model as
the Ray worker loop does (`ddp_settings`: parameters that no loss reaches are frozen, unused-parameter
search only where a mask head can sit idle), then taking two optimizer steps of every stage of the
recipe on its own shard of the data. Two steps, because DDP reports a parameter that received no
gradient at the start of the *next* forward pass. The tiny twins stand in for the full-size recipes,
which `test_seed_recipes` assembles on the meta device with the published sizes; Ray itself is
exercised by `test_train_console.py` (a two-worker `rsforge train` of a mask recipe).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

from .conftest import ROOT, free_port
from .test_seed_recipes import _small_data

RECIPES = [ROOT / "recipes" / name for name in ("demo.yaml", "tiny.yaml")] + sorted(
    (ROOT / "recipes").glob("*-tiny.yaml"))
STEPS, BATCH = 2, 4


def _recipe(path: Path, data_root: Path, plugins):
    from rsforge.core.recipe import parse_recipe
    from rsforge.datasets.loading import load_split, training_texts

    recipe = parse_recipe(_small_data(yaml.safe_load(path.read_text()), data_root), plugins.registry, source=str(path))
    samples = load_split(recipe, plugins, "train")
    return recipe.prepared(training_texts(samples)), samples


def _train_stages(recipe, samples, plugins, rank: int, world: int) -> list[float]:
    from torch.nn.parallel import DistributedDataParallel

    from rsforge.core.model import RSForgeModel
    from rsforge.datasets.torch_dataset import SampleDataset, collate
    from rsforge.train.reward_set import RewardSet
    from rsforge.train.scst import scst_step
    from rsforge.train.steps import (
        build_optimizer,
        build_scheduler,
        mean_across_ranks,
        objective_parameters,
        seed_everything,
        train_step,
    )
    from rsforge.train.worker_loop import ddp_settings, probe_indices, stages_of

    seed_everything(recipe.train.seed)
    model = RSForgeModel.from_recipe(recipe, plugins)
    dataset = SampleDataset(samples, model.image_size, model.interpolation, channels=model.in_chans)
    kwargs = ddp_settings(model, collate([dataset[i] for i in probe_indices(samples)]), samples)
    ddp = DistributedDataParallel(model, **kwargs)
    mine = list(range(rank, len(samples), world))
    batches = [collate([dataset[i] for i in mine[k * BATCH:(k + 1) * BATCH]]) for k in range(STEPS)]
    losses = []
    for stage in stages_of(recipe):
        only = objective_parameters(model, next(b for b in batches if b.masks is not None)) \
            if stage.kind == "mask" else None
        optimizer = build_optimizer(model, recipe.train, lr=stage.lr or recipe.train.lr, only=only)
        scheduler = build_scheduler(optimizer, recipe.train, total_steps=STEPS)
        rewards = RewardSet.from_recipe(recipe, plugins, [s.references for s in samples if s.references]) \
            if stage.kind == "scst" else None
        for batch in batches:
            if stage.kind == "scst":
                log = scst_step(ddp, batch, optimizer, scheduler, rewards, stage, grad_clip=recipe.train.grad_clip)
            else:
                log = train_step(ddp, [batch], optimizer, scheduler, grad_clip=recipe.train.grad_clip, kind=stage.kind)
            losses.append(mean_across_ranks(log)["loss"])
    return losses


def _worker(rank: int, world: int, port: int, paths: list[str], data_root: str, out: str) -> None:
    from rsforge.core.plugins import PluginManager

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    plugins = PluginManager()
    results = {}
    for path in map(Path, paths):
        recipe, samples = _recipe(path, Path(data_root), plugins)
        results[path.name] = _train_stages(recipe, samples, plugins, rank, world)
    from rsforge.train.steps import mean_across_ranks

    # What the worker loop logs: each key averaged over the ranks that have it (only rank 0 has a mask loss).
    results["averaged"] = mean_across_ranks({"loss": float(rank), **({"mask": 1.0} if rank == 0 else {})})
    if rank == 0:
        Path(out).write_text(json.dumps(results))
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, plugins) -> Path:
    """The recipes' data, generated once before the workers start (two writers would race)."""
    root = tmp_path_factory.mktemp("worker-data")
    for path in RECIPES:
        _recipe(path, root, plugins)
    return root


@pytest.mark.parametrize("world", [1, 2])
def test_every_recipe_trains_on_one_and_two_workers(world, data_root, tmp_path):
    out = tmp_path / "losses.json"
    paths = [str(p) for p in RECIPES]
    mp.spawn(_worker, args=(world, free_port(), paths, str(data_root), str(out)), nprocs=world, join=True)
    results = json.loads(out.read_text())
    assert results.pop("averaged") == {"loss": (world - 1) / 2, "mask": 1.0}
    assert set(results) == {p.name for p in RECIPES}
    for name, losses in results.items():
        assert losses and all(torch.isfinite(torch.tensor(losses))), (name, losses)


def test_parameters_no_loss_reaches_are_frozen_and_named(plugins, data_root):
    """change-mask-tiny reads the ResNet's maps up to layer3 and no tokens: layer4 can never train."""
    from rsforge.core.model import RSForgeModel
    from rsforge.datasets.torch_dataset import SampleDataset, collate
    from rsforge.train.worker_loop import ddp_settings, probe_indices

    recipe, samples = _recipe(ROOT / "recipes" / "change-mask-tiny.yaml", data_root, plugins)
    model = RSForgeModel.from_recipe(recipe, plugins)
    dataset = SampleDataset(samples, model.image_size, model.interpolation)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    rng = torch.get_rng_state()
    kwargs = ddp_settings(model, collate([dataset[i] for i in probe_indices(samples)]), samples)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith("encoder.backbone.layer4.") for n in frozen)
    assert not any(n.startswith("heads.") or ".layer3." in n for n in frozen)
    assert kwargs == {"find_unused_parameters": False}  # every synthetic pair has a mask
    # The probe leaves no trace: weights, BatchNorm statistics and the random stream are as they were.
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
    assert all(torch.equal(buffers[n], b) for n, b in model.named_buffers())
    assert torch.equal(rng, torch.get_rng_state())
