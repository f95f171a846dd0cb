"""Where an SCST step's time goes, on `recipes/instructblip-scst-tiny.yaml`: the rewards (PTB tokenization
and every text reward of the recipe, `RewardSet.score`) against the model: the rollouts (greedy decode
and K sampled ones, `RSForgeModel.generate`), the log-prob forward pass (`continuation_logits`) and the
rest, backward and the optimizer step. Both `scst_mode`s, at the recipe's batch size, one torch thread.

Each part is timed by wrapping that object's method for the run; `ratio_rewards_vs_model` is the
rewards' time over the model's (all the rest of the step), so above 1 the rewards dominate a step. The
two modes run in rounds, in turns first (`pairs.py`), each round a block of steps per mode; each block
gives one ratio, reported as the median over the rounds with its spread, and the per-part times are the
medians over the rounds. A split, not an A/B pair: both sides of a ratio are timed in the same steps.

    python bench/scst_split.py [--quick] [--rounds N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
import yaml
from pairs import describe, interleave, ratio, summary, torch_threads
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
PARTS = ("step", "rewards", "rollouts", "forward")


def timed(seconds: dict[str, float], key: str, method):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            seconds[key] += time.perf_counter() - start

    return wrapper


class Split:
    """One `scst_mode`'s model, rewards and data; `block()` runs `steps` SCST steps and returns their
    rewards-vs-model time ratio, keeping each part's ms per step in `rounds`."""

    def __init__(self, mode: str, *, steps: int, total_steps: int, data_root: Path) -> None:
        plugins = PluginManager()
        raw = yaml.safe_load((ROOT / "recipes" / RECIPE).read_text())
        raw["data"].update(root=str(data_root))
        recipe = parse_recipe(raw, plugins.registry)
        samples = load_split(recipe, plugins, "train")
        self.recipe = recipe.prepared(training_texts(samples))
        self.mode, self.steps = mode, steps
        self.stage = next(s for s in self.recipe.train.stages if s.kind == "scst").model_copy(
            update={"scst_mode": mode})
        seed_everything(self.recipe.train.seed)
        self.model = RSForgeModel.from_recipe(self.recipe, plugins)
        once = list({s.images: s for s in samples}.values())
        self.rewards = RewardSet.from_recipe(self.recipe, plugins, [list(s.references) for s in once])
        self.optimizer = build_optimizer(self.model, self.recipe.train, lr=self.stage.lr)
        self.scheduler = build_scheduler(self.optimizer, self.recipe.train, total_steps=total_steps)
        self.loader = DataLoader(SampleDataset(once, self.model.image_size, self.model.interpolation),
                                 batch_size=self.recipe.train.batch_size, shuffle=True, drop_last=True,
                                 collate_fn=collate, generator=torch.Generator().manual_seed(0))
        self.batches = iter(())
        self.seconds: dict[str, float] = defaultdict(float)
        self.rewards.score = timed(self.seconds, "rewards", self.rewards.score)
        self.model.generate = timed(self.seconds, "rollouts", self.model.generate)
        self.model.continuation_logits = timed(self.seconds, "forward", self.model.continuation_logits)
        self.rounds: list[dict[str, float]] = []

    def next_batch(self):
        batch = next(self.batches, None)
        if batch is None:  # a new epoch
            self.batches = iter(self.loader)
            batch = next(self.batches)
        return batch

    def block(self) -> float:
        self.seconds.clear()
        for _ in range(self.steps):
            batch = self.next_batch()
            start = time.perf_counter()
            scst_step(self.model, batch, self.optimizer, self.scheduler, self.rewards, self.stage,
                      grad_clip=self.recipe.train.grad_clip)
            self.seconds["step"] += time.perf_counter() - start
        ms = {part: 1000 * self.seconds[part] / self.steps for part in PARTS}
        self.rounds.append(ms)
        return ms["rewards"] / (ms["step"] - ms["rewards"])

    def row(self, ratios: list[float]) -> dict:
        """Median ms per step of each part over the timed rounds (the warm-up's left out) and the ratio."""
        ms = {part: statistics.median(r[part] for r in self.rounds[-len(ratios):]) for part in PARTS}
        model_ms = ms["step"] - ms["rewards"]
        return {"mode": self.mode, "batch": self.recipe.train.batch_size, "samples_per_input": self.stage.num_samples,
                "rewards": ", ".join(self.rewards.names), "step_ms": round(ms["step"], 2),
                "rewards_ms": round(ms["rewards"], 2), "rollouts_ms": round(ms["rollouts"], 2),
                "forward_ms": round(ms["forward"], 2),
                "backward_and_optimizer_ms": round(model_ms - ms["rollouts"] - ms["forward"], 2),
                "rewards_share": round(ms["rewards"] / ms["step"], 3),
                **ratio("rewards_vs_model", summary(ratios))}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps (for the test suite)")
    parser.add_argument("--rounds", type=int, help="timed rounds (default 2 quick, 9 full)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    steps, rounds = (2, 2) if args.quick else (8, 9)
    rounds = args.rounds or rounds

    with torch_threads(1), tempfile.TemporaryDirectory() as tmp:
        # The warm-up round's steps warm the caches (PTB tokenization, kernels) and are not counted.
        splits = {mode: Split(mode, steps=steps, total_steps=steps * (rounds + 1), data_root=Path(tmp) / "data")
                  for mode in ("rollout", "teacher_forced")}
        ratios = interleave({mode: split.block for mode, split in splits.items()}, rounds, warmup=1,
                            desc=None if args.quick else "scst split")
    rows = [split.row(ratios[mode]) for mode, split in splits.items()]
    result = {"benchmark": "scst_split", "quick": args.quick, "recipe": RECIPE, "steps_per_round": steps,
              "rounds": rounds, "rows": rows,
              "note": "ms per SCST step: rewards vs the model (rollouts, log-prob forward, backward + optimizer)"}
    for row in rows:
        print(f"{row['mode']:>14}: {row['step_ms']:.1f} ms/step = rewards {row['rewards_ms']:.1f} + rollouts "
              f"{row['rollouts_ms']:.1f} + forward {row['forward_ms']:.1f} + backward/optimizer "
              f"{row['backward_and_optimizer_ms']:.1f} (rewards {100 * row['rewards_share']:.0f}%); rewards vs "
              f"model {describe(summary(ratios[row['mode']]))}")
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
