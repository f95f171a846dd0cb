"""Where an SCST step's time goes, on `recipes/instructblip-scst-tiny.yaml`: the rewards (PTB tokenization
and every text reward of the recipe, `RewardSet.score`) against the model: the rollouts (greedy decode
and K sampled ones, `RSForgeModel.generate`), the log-prob forward pass (`continuation_logits`) and the
rest, backward and the optimizer step. Both `scst_mode`s, at the recipe's batch size, one torch thread.

Each part is timed by wrapping that object's method for the run; `ratio_rewards_vs_model` is the
rewards' time over the model's (all the rest of the step), so above 1 the rewards dominate a step.

    python bench/scst_split.py [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
import yaml
from torch.utils.data import DataLoader

from rsforge.core.atomic import atomic_write_text
from rsforge.core.model import RSForgeModel
from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import parse_recipe
from rsforge.datasets.loading import load_split, training_texts
from rsforge.datasets.torch_dataset import SampleDataset, collate
from rsforge.train.reward_set import RewardSet
from rsforge.train.scst import scst_step
from rsforge.train.steps import build_optimizer, build_scheduler, seed_everything

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "instructblip-scst-tiny.yaml"


def timed(seconds: dict[str, float], key: str, method):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            seconds[key] += time.perf_counter() - start

    return wrapper


def measure(mode: str, *, steps: int, warmup: int, data_root: Path) -> dict:
    plugins = PluginManager()
    raw = yaml.safe_load((ROOT / "recipes" / RECIPE).read_text())
    raw["data"].update(root=str(data_root))
    recipe = parse_recipe(raw, plugins.registry)
    samples = load_split(recipe, plugins, "train")
    recipe = recipe.prepared(training_texts(samples))
    stage = next(s for s in recipe.train.stages if s.kind == "scst").model_copy(update={"scst_mode": mode})
    seed_everything(recipe.train.seed)
    model = RSForgeModel.from_recipe(recipe, plugins)
    once = list({s.images: s for s in samples}.values())
    rewards = RewardSet.from_recipe(recipe, plugins, [list(s.references) for s in once])
    optimizer = build_optimizer(model, recipe.train, lr=stage.lr)
    scheduler = build_scheduler(optimizer, recipe.train, total_steps=steps + warmup)
    loader = DataLoader(SampleDataset(once, model.image_size, model.interpolation), batch_size=recipe.train.batch_size,
                        shuffle=True, drop_last=True, collate_fn=collate, generator=torch.Generator().manual_seed(0))

    seconds: dict[str, float] = defaultdict(float)
    rewards.score = timed(seconds, "rewards", rewards.score)
    model.generate = timed(seconds, "rollouts", model.generate)
    model.continuation_logits = timed(seconds, "forward", model.continuation_logits)
    done = 0
    while done < steps + warmup:
        for batch in loader:
            if done == warmup:  # the first steps warm the caches (PTB tokenization, kernels) and are not counted
                seconds.clear()
            start = time.perf_counter()
            scst_step(model, batch, optimizer, scheduler, rewards, stage, grad_clip=recipe.train.grad_clip)
            seconds["step"] += time.perf_counter() - start
            done += 1
            if done == steps + warmup:
                break
    ms = {key: 1000 * value / steps for key, value in seconds.items()}
    model_ms = ms["step"] - ms["rewards"]
    return {"mode": mode, "batch": recipe.train.batch_size, "samples_per_input": stage.num_samples,
            "rewards": ", ".join(rewards.names), "step_ms": round(ms["step"], 2), "rewards_ms": round(ms["rewards"], 2),
            "rollouts_ms": round(ms.get("rollouts", 0.0), 2), "forward_ms": round(ms["forward"], 2),
            "backward_and_optimizer_ms": round(model_ms - ms.get("rollouts", 0.0) - ms["forward"], 2),
            "rewards_share": round(ms["rewards"] / ms["step"], 3), "ratio_rewards_vs_model": ms["rewards"] / model_ms}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps (for the test suite)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    steps, warmup = (2, 1) if args.quick else (30, 3)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rows = [measure(mode, steps=steps, warmup=warmup, data_root=Path(tmp) / "data")
                    for mode in ("rollout", "teacher_forced")]
    finally:
        torch.set_num_threads(threads)
    result = {"benchmark": "scst_split", "quick": args.quick, "recipe": RECIPE, "steps": steps, "rows": rows,
              "note": "ms per SCST step: rewards vs the model (rollouts, log-prob forward, backward + optimizer)"}
    for row in rows:
        print(f"{row['mode']:>14}: {row['step_ms']:.1f} ms/step = rewards {row['rewards_ms']:.1f} + rollouts "
              f"{row['rollouts_ms']:.1f} + forward {row['forward_ms']:.1f} + backward/optimizer "
              f"{row['backward_and_optimizer_ms']:.1f} (rewards {100 * row['rewards_share']:.0f}%)")
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
