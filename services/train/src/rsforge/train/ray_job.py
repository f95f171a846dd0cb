"""Driver side of a training run: one Ray Train `TorchTrainer` over the recipe's workers.

Checkpoints live under `<run dir>/ray`. Ray Train (V2) restores a run whose storage folder already
holds a run snapshot: `resume=True` relies on exactly that, so `rsforge train --resume RUN_DIR`
continues from the latest checkpoint with the optimizer, scheduler, RNG and data position it saved.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import ray
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from rsforge.core.atomic import atomic_write_text
from rsforge.core.model import RECIPE_FILE, RSForgeModel
from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import Recipe
from rsforge.core.sample import Sample
from rsforge.train.worker_loop import HISTORY_FILE, MODEL_DIR, FailOnce, train_loop_per_worker

RAY_DIR = "ray"


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


def trainer_for(
    recipe: Recipe, samples: list[Sample], run_dir: Path, *, val_samples: list[Sample] | None = None,
    fail_once: FailOnce | None = None,
) -> TorchTrainer:
    cfg = recipe.train
    resources = {"CPU": cfg.cpus_per_worker}
    if cfg.use_gpu:
        resources["GPU"] = 1
    return TorchTrainer(
        train_loop_per_worker,
        # Workers get the recipe as plain data and the driver's validated sample lists (absolute paths).
        # The run directory must be reachable from every node on a cluster (shared storage, as Ray's
        # storage_path must be): rank 0 writes metrics.jsonl there, the feature cache defaults there.
        train_loop_config={"recipe": recipe.to_dict(), "samples": samples, "val_samples": val_samples or [],
                           "run_dir": str(run_dir), "fail_once": asdict(fail_once) if fail_once else None},
        scaling_config=ScalingConfig(num_workers=cfg.ray_workers, use_gpu=cfg.use_gpu,
                                     resources_per_worker=resources),
        run_config=RunConfig(
            name=RAY_DIR,
            storage_path=str(run_dir),
            checkpoint_config=CheckpointConfig(
                num_to_keep=cfg.keep_checkpoints, checkpoint_score_attribute=cfg.checkpoint_metric,
                checkpoint_score_order="min"),
            failure_config=FailureConfig(max_failures=cfg.max_failures),
        ),
    )


def train_with_ray(
    recipe: Recipe, samples: list[Sample], run_dir: Path, *, plugins: PluginManager, address: str | None = None,
    val_samples: list[Sample] | None = None, resume: bool = False, fail_once: FailOnce | None = None,
) -> TrainResult:
    """Train `recipe` (already prepared) into `run_dir`. A fresh run refuses a run directory that already
    holds checkpoints (Ray would silently continue it); `resume=True` requires them."""
    run_dir = Path(run_dir).resolve()
    started = (run_dir / RAY_DIR).is_dir()
    if started and not resume:
        raise FileExistsError(f"{run_dir}: already holds a training run; continue it with --resume {run_dir} "
                              "or choose another --out")
    if resume and not started:
        raise FileNotFoundError(f"{run_dir}: no training run to resume (no {RAY_DIR}/ folder)")
    if not resume:
        atomic_write_text(run_dir / RECIPE_FILE, recipe.to_yaml())
    ensure_ray(address)
    trainer = trainer_for(recipe, samples, run_dir, val_samples=val_samples, fail_once=fail_once)
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training of '{recipe.name}' finished without a checkpoint")
    with result.checkpoint.as_directory() as directory:
        model = RSForgeModel.from_pretrained(Path(directory) / MODEL_DIR, plugins=plugins)
        history = json.loads((Path(directory) / HISTORY_FILE).read_text())
    return TrainResult(model=model, history=history, checkpoint_dir=result.checkpoint.path)
