"""A recipe run end to end: data -> train with Ray -> save -> evaluate (against the baseline) -> report."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import Recipe
from rsforge.datasets.loading import load_split, training_texts
from rsforge.tasks.evaluate import evaluate, evaluate_baselines
from rsforge.train.ray_job import train_with_ray
from rsforge.train.report import write_report


@dataclass
class RunOutcome:
    run_dir: Path
    model_dir: Path
    report_dir: Path
    metrics: dict
    baselines: dict[str, dict] | None
    seconds: dict[str, float]
    history: list[dict]


def run_recipe(
    recipe: Recipe, run_dir: Path, *, plugins: PluginManager, split: str | None = None, baseline: bool = True,
    address: str | None = None, progress: bool = True, resume: bool = False,
) -> RunOutcome:
    """`resume`: continue the stopped run in `run_dir` (its checkpoints, recipe and metrics log)."""
    run_dir = Path(run_dir).resolve()
    split = split or recipe.eval.split
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    train_samples = load_split(recipe, plugins, "train")
    eval_samples = load_split(recipe, plugins, split)
    if not train_samples:
        raise ValueError(f"recipe '{recipe.name}': the train split has no usable samples")
    recipe = recipe.prepared(training_texts(train_samples), train_samples)
    val_samples = None
    if recipe.train.checkpoint_metric == "val_loss":
        val_samples = eval_samples if split == "val" else load_split(recipe, plugins, "val")
    seconds["data"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    result = train_with_ray(recipe, train_samples, run_dir, plugins=plugins, address=address,
                            val_samples=val_samples, resume=resume, progress=progress,
                            command={"split": split, "baseline": baseline})
    seconds["train"] = time.perf_counter() - t0
    model_dir = result.model.save_pretrained(run_dir / "model")

    t0 = time.perf_counter()
    cfg = recipe.eval
    evaluation = evaluate(result.model, eval_samples, batch_size=cfg.batch_size,
                          max_new_tokens=cfg.max_new_tokens, progress=progress)
    base = evaluate_baselines(result.model, train_samples, eval_samples) if baseline else None
    seconds["evaluate"] = time.perf_counter() - t0

    panel_samples = [s for s in eval_samples if s.changed][: cfg.panels]
    report_dir = write_report(
        run_dir / "report", recipe_name=recipe.name, split=split, model_metrics=evaluation.metrics,
        baselines=base, history=result.history, predictions=evaluation.predictions, model=result.model,
        panel_samples=panel_samples, seconds=seconds,
    )
    return RunOutcome(run_dir, model_dir, report_dir, evaluation.metrics, base, seconds, result.history)
