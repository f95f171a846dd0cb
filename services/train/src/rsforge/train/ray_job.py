"""Driver side of a training run: one Ray Train `TorchTrainer` over the recipe's workers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import ray
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from rsforge.core.data.schema import Sample
from rsforge.core.model import RSForgeModel
from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import Recipe
from rsforge.train.worker_loop import HISTORY_FILE, MODEL_DIR, train_loop_per_worker


@dataclass
class TrainResult:
    model: RSForgeModel
    history: list[dict]
    checkpoint_dir: str


def ensure_ray(address: str | None) -> None:
    """Local Ray is the embedded default; an address joins an existing cluster. The dashboard stays on
    (Ray's default, bound to localhost): Ray Train V2 watches its controller through the State API
    that the dashboard serves, and warns every few seconds without it."""
    if not ray.is_initialized():
        ray.init(address=address)


def train_with_ray(
    recipe: Recipe, samples: list[Sample], run_dir: Path, *, plugins: PluginManager, address: str | None = None
) -> TrainResult:
    ensure_ray(address)
    cfg = recipe.train
    trainer = TorchTrainer(
        train_loop_per_worker,
        # Workers get the recipe as plain data and the driver's validated sample list (absolute paths).
        train_loop_config={"recipe": recipe.to_dict(), "samples": samples},
        scaling_config=ScalingConfig(
            num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, resources_per_worker={"CPU": cfg.cpus_per_worker}
        ),
        run_config=RunConfig(
            name="ray",
            storage_path=str(Path(run_dir).resolve()),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            failure_config=FailureConfig(max_failures=cfg.max_failures),
        ),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training of '{recipe.name}' finished without a checkpoint")
    with result.checkpoint.as_directory() as directory:
        model = RSForgeModel.from_pretrained(Path(directory) / MODEL_DIR, plugins=plugins)
        history = json.loads((Path(directory) / HISTORY_FILE).read_text())
    return TrainResult(model=model, history=history, checkpoint_dir=result.checkpoint.path)
