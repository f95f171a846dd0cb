"""Driver side of a training run: one Ray Train `TorchTrainer` over the recipe's workers.

Checkpoints live under `<run dir>/ray`. Ray Train (V2) restores a run whose storage folder already
holds a run snapshot: `resume=True` relies on exactly that, so `rsforge train --resume RUN_DIR`
continues from the latest checkpoint with the optimizer, scheduler, RNG and data position it saved.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import ray
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from rsforge.core.atomic import atomic_write_text
from rsforge.core.errors import RunError
from rsforge.core.model import RECIPE_FILE, RSForgeModel
from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import Recipe
from rsforge.core.sample import Sample
from rsforge.train.console import RunConsole
from rsforge.train.worker_loop import (
    HISTORY_FILE,
    LOG_DIR,
    METRICS_FILE,
    MODEL_DIR,
    FailOnce,
    stages_of,
    train_loop_per_worker,
)

RAY_DIR = "ray"
COMMAND_FILE = "command.json"  # how the run was started, so that --resume finishes it the same way


@dataclass
class TrainResult:
    model: RSForgeModel
    history: list[dict]
    checkpoint_dir: str


def ensure_ray(address: str | None) -> None:
    """Local Ray is the embedded default; an address joins an existing cluster. Workers' output stays in
    their log files (`logs/` in the run directory) and the driver logs only Ray's errors: the console is
    the run's progress. The dashboard stays on (Ray's default, bound to localhost): Ray Train V2 watches
    its controller through the State API that the dashboard serves, and warns every few seconds without it."""
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)


def check_run_dir(run_dir: Path, *, resume: bool) -> None:
    """Refuse, before anything is loaded or written, a run directory the command cannot use: a fresh run
    needs a new or empty folder (never a user's folder, never a run that `--resume` should continue); a
    resumed one needs a run that `rsforge train` wrote."""
    run_dir = Path(run_dir)
    if resume:
        if not (run_dir / RECIPE_FILE).is_file() or not (run_dir / RAY_DIR).is_dir():
            raise FileNotFoundError(f"{run_dir}: no training run to resume here (a run folder holds {RECIPE_FILE} "
                                    f"and {RAY_DIR}/, written by rsforge train or rsforge run)")
        return
    if (run_dir / RAY_DIR).is_dir():
        raise FileExistsError(f"{run_dir}: already holds a training run; continue it with --resume {run_dir} "
                              "or choose another --out")
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise FileExistsError(f"{run_dir}: exists and is not an empty folder; a run is written into a new or empty "
                              "folder only (choose another --out)")


def _checkpoints(run_dir: Path) -> list[Path]:
    return sorted((run_dir / RAY_DIR).glob("checkpoint_*"))


def _root_error(error: BaseException) -> tuple[str, BaseException]:
    """(`rank N` or `the trainer`, the original exception) of a Ray Train failure."""
    failures = getattr(error, "worker_failures", None)
    if failures:
        # When one rank dies the others fail in their next collective ("Connection reset by peer"): the
        # cause is the rank whose error is not such an echo.
        echo = ("gloo", "nccl", "connection reset", "connection closed")
        rank, failure = min(failures.items(), key=lambda item: (any(e in str(item[1]).lower() for e in echo),
                                                               item[0]))
        where = f"rank {rank}"
    else:
        where, failure = "the trainer", getattr(error, "controller_failure", error)
    return where, getattr(failure, "cause", None) or failure


def _failure(error: BaseException, run_dir: Path, *, fresh: bool) -> RunError:
    """The one-line error of a failed run; a fresh run that saved no checkpoint is removed (its worker
    logs are kept in a temporary folder named in the message), one with checkpoints can be resumed."""
    where, root = _root_error(error)
    text = str(root).strip().splitlines()
    message = f"training failed on {where}: {type(root).__name__}: {text[-1] if text else ''}"
    logs = run_dir / LOG_DIR
    if fresh and not _checkpoints(run_dir):
        kept = Path(tempfile.mkdtemp(prefix="rsforge-failed-run-"))
        if logs.is_dir():
            shutil.copytree(logs, kept / LOG_DIR)
        shutil.rmtree(run_dir, ignore_errors=True)
        return RunError(f"{message} (nothing was saved, {run_dir} removed; worker logs: {kept / LOG_DIR})")
    return RunError(f"{message} (worker logs: {logs}; continue from the last checkpoint with "
                          f"rsforge train --resume {run_dir})")


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
    progress: bool = True, command: dict | None = None,
) -> TrainResult:
    """Train `recipe` (already prepared) into `run_dir` (see `check_run_dir`). A run that fails or is
    interrupted before its first checkpoint leaves nothing behind; after one, `--resume` continues it.
    `command`: what started the run (evaluation split, baseline), recorded for `--resume`."""
    run_dir = Path(run_dir).resolve()
    check_run_dir(run_dir, resume=resume)
    fresh = not resume
    if fresh:
        atomic_write_text(run_dir / RECIPE_FILE, recipe.to_yaml())
        atomic_write_text(run_dir / COMMAND_FILE, json.dumps(command or {}))
    ensure_ray(address)
    trainer = trainer_for(recipe, samples, run_dir, val_samples=val_samples, fail_once=fail_once)
    done = _last_step(run_dir) if resume else 0
    console = RunConsole(run_dir / METRICS_FILE, len(stages_of(recipe)), from_step=done) if progress else None
    try:
        with console or contextlib.nullcontext():
            result = trainer.fit()
    except ray.train.TrainingFailedError as exc:
        raise _failure(exc, run_dir, fresh=fresh) from None
    except KeyboardInterrupt:
        if fresh and not _checkpoints(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
            raise RunError(f"interrupted before the first checkpoint; {run_dir} removed") from None
        raise RunError(f"interrupted; continue from the last checkpoint with rsforge train --resume "
                             f"{run_dir}") from None
    if result.checkpoint is None:
        raise RuntimeError(f"training of '{recipe.name}' finished without a checkpoint")
    with result.checkpoint.as_directory() as directory:
        model = RSForgeModel.from_pretrained(Path(directory) / MODEL_DIR, plugins=plugins)
        history = json.loads((Path(directory) / HISTORY_FILE).read_text())
    return TrainResult(model=model, history=history, checkpoint_dir=result.checkpoint.path)


def _last_step(run_dir: Path) -> int:
    checkpoints = _checkpoints(run_dir)
    return int(checkpoints[-1].name.split("_")[-1]) if checkpoints else 0
