"""The per-worker training loop that Ray Train runs on every worker.

Each worker rebuilds the model from the recipe (plain data) with its own installed plugins, reads
its shard of the training samples, and runs the kernel's pure-torch SFT step. Rank 0 writes a
checkpoint at the end of every epoch: model + optimizer + scheduler + loss history, so a
restarted worker group continues where the last checkpoint left off.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import ray.train
import ray.train.torch
import torch
from ray.experimental import tqdm_ray
from torch.utils.data import DataLoader, DistributedSampler

from rsforge.core.assembler import assemble
from rsforge.core.data.torch_dataset import SampleDataset, collate
from rsforge.core.model import RSForgeModel
from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import parse_recipe
from rsforge.core.train_steps import build_optimizer, build_scheduler, move_batch, seed_everything, sft_step

MODEL_DIR = "model"
STATE_FILE = "train_state.pt"
HISTORY_FILE = "history.json"


def _save_checkpoint(directory: Path, model: RSForgeModel, optimizer, scheduler, epoch: int, history: list) -> None:
    model.save_pretrained(directory / MODEL_DIR)
    # Optimizer/scheduler state holds only tensors and numbers, so weights_only loading accepts it.
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "epoch": epoch,
                "rng": torch.get_rng_state()}, directory / STATE_FILE)
    (directory / HISTORY_FILE).write_text(json.dumps(history))


def train_loop_per_worker(config: dict) -> None:
    plugins = PluginManager()
    recipe = parse_recipe(config["recipe"], plugins.registry)
    train_cfg = recipe.train
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    seed_everything(train_cfg.seed)

    model = assemble(recipe, plugins)
    dataset = SampleDataset(config["samples"], model.image_size, model.interpolation)
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=train_cfg.seed)
    per_worker = max(train_cfg.batch_size // world, 1)
    loader = DataLoader(dataset, batch_size=per_worker, sampler=sampler, collate_fn=collate, drop_last=True)
    if len(loader) == 0:
        raise ValueError(f"{len(dataset)} training samples make no full batch of {per_worker} per worker")
    optimizer = build_optimizer(model, train_cfg)
    scheduler = build_scheduler(optimizer, train_cfg, total_steps=train_cfg.epochs * len(loader))

    start_epoch, history = 0, []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            directory = Path(directory)
            restored = RSForgeModel.from_pretrained(directory / MODEL_DIR, plugins=plugins)
            model.load_state_dict(restored.state_dict())
            state = torch.load(directory / STATE_FILE, weights_only=True)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"])
            start_epoch = state["epoch"] + 1
            history = json.loads((directory / HISTORY_FILE).read_text())

    device = ray.train.torch.get_device()
    # Heads sit idle on batches without their targets (masks, class labels); only then must DDP look
    # for unused parameters (the search costs an extra pass over the graph every step).
    unused = len(model.mask_heads) < len(model.heads) or (
        bool(model.mask_heads) and any(s.mask is None for s in config["samples"]))
    ddp = ray.train.torch.prepare_model(model, parallel_strategy_kwargs={"find_unused_parameters": unused})
    core = model  # the unwrapped module: saving and checkpoint keys stay free of DDP's "module." prefix

    step = start_epoch * len(loader)
    for epoch in range(start_epoch, train_cfg.epochs):
        sampler.set_epoch(epoch)
        bar = tqdm_ray.tqdm(total=len(loader), desc=f"epoch {epoch + 1}/{train_cfg.epochs}") if rank == 0 else None
        epoch_losses = []
        for batch in loader:
            losses = sft_step(ddp, move_batch(batch, device), optimizer, scheduler, grad_clip=train_cfg.grad_clip)
            step += 1
            epoch_losses.append(losses["loss"])
            history.append({"step": step, "epoch": epoch + 1, "lr": scheduler.get_last_lr()[0], **losses})
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        metrics = {"epoch": epoch + 1, "step": step, "loss": sum(epoch_losses) / len(epoch_losses)}
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if rank == 0:
                _save_checkpoint(Path(tmp), core, optimizer, scheduler, epoch, history)
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=ckpt)
