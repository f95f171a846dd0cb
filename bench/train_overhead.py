"""Ray Train overhead: `rsforge train` with one Ray worker against a plain PyTorch loop over the same
recipe, data, batches, optimizer and steps: Ray's steady-state throughput over the loop's.

Steady state, and how it is measured: both runs log a wall-clock time per optimizer step; the
throughput is counted from the end of warm-up step W to the last step, so Ray's start-up (cluster,
controller, worker group, process group, the worker's imports and model build) and the final
checkpoint after the last step are excluded, while everything Ray adds per step (the DDP-prepared
model, the metrics log, the progress bar) is included. The Ray worker gets one CPU and Ray pins its
torch to one thread, so the plain loop runs with one torch thread too. Each round runs the plain loop
and a Ray Train run back to back, in turns first (`pairs.py`), in one Ray cluster started once; the
ratio is per round.

    flock /tmp/rsforge-ray.lock python bench/train_overhead.py [--quick] [--rounds N] [--json OUT]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path

import ray
import torch
import yaml
from pairs import describe, interleave, paired, ratio, torch_threads
from torch.utils.data import DataLoader, RandomSampler
from tqdm import tqdm

from rsforge.core.atomic import atomic_write_text
from rsforge.core.model import RSForgeModel
from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import parse_recipe
from rsforge.datasets.loading import load_split, training_texts
from rsforge.datasets.torch_dataset import SampleDataset, collate
from rsforge.train.steps import build_optimizer, build_scheduler, seed_everything, train_step

ROOT = Path(__file__).resolve().parents[1]


def steady_throughput(times: list[float], batch_size: int, warmup: int) -> float:
    """Samples/s between the end of step `warmup` and the end of the last step."""
    if len(times) <= warmup + 1:
        raise ValueError(f"{len(times)} steps leave nothing to time after {warmup} warm-up steps")
    return (len(times) - 1 - warmup) * batch_size / (times[-1] - times[warmup])


def plain_loop(recipe, samples, plugins) -> list[float]:
    """What one Ray worker runs, without Ray: same seed, model, batch size, optimizer and step."""
    cfg = recipe.train
    seed_everything(cfg.seed)
    model = RSForgeModel.from_recipe(recipe, plugins)
    dataset = SampleDataset(samples, model.image_size, model.interpolation)
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=RandomSampler(dataset, generator=generator),
                        collate_fn=collate, drop_last=True)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, total_steps=len(loader))
    times = []
    for batch in tqdm(loader, desc="plain loop", leave=False):
        train_step(model, batch, optimizer, scheduler, grad_clip=cfg.grad_clip)
        times.append(time.time())
    return times


def ray_run(recipe, samples, plugins, run_dir: Path) -> list[float]:
    from rsforge.train.ray_job import train_with_ray
    from rsforge.train.worker_loop import METRICS_FILE

    train_with_ray(recipe, samples, run_dir, plugins=plugins)
    return [json.loads(line)["time"] for line in (run_dir / METRICS_FILE).read_text().splitlines()]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps of the tiny recipe, one round (for the "
                        "test suite)")
    parser.add_argument("--rounds", type=int, help="timed rounds (default 1 quick, 3 full)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    pairs, warmup, rounds = (16, 1, 1) if args.quick else (320, 5, 3)
    rounds = args.rounds or rounds

    plugins = PluginManager()
    owns_ray = not ray.is_initialized()
    with tempfile.TemporaryDirectory() as tmp:
        raw = yaml.safe_load((ROOT / "recipes" / "tiny.yaml").read_text())
        raw["data"].update(root=str(Path(tmp) / "data"), n=pairs)
        raw["train"].update(ray_workers=1, cpus_per_worker=1, epochs=1, checkpoint_every=0)
        recipe = parse_recipe(raw, plugins.registry)
        samples = load_split(recipe, plugins, "train")
        recipe = recipe.prepared(training_texts(samples))
        batch_size = recipe.train.batch_size
        runs = itertools.count()
        startups = []

        def plain() -> float:
            with torch_threads(1):  # what Ray gives its one-CPU worker
                return steady_throughput(plain_loop(recipe, samples, plugins), batch_size, warmup)

        def on_ray() -> float:
            started = time.perf_counter()
            times = ray_run(recipe, samples, plugins, Path(tmp) / f"run-{next(runs)}")
            startups.append(time.perf_counter() - started - (times[-1] - times[0]))
            return steady_throughput(times, batch_size, warmup)

        if owns_ray:
            ray.init(num_cpus=2, log_to_driver=False, configure_logging=False)
        try:
            # No warm-up round: both throughputs are counted after `warmup` steps of their own run.
            throughput = interleave({"plain": plain, "ray": on_ray}, rounds, warmup=0,
                                    desc=None if args.quick else "plain loop / Ray Train")
        finally:
            if owns_ray:
                ray.shutdown()

    spread = paired(throughput["ray"], throughput["plain"])
    row = {"recipe": "tiny.yaml", "steps_per_run": len(samples) // batch_size, "warmup_steps": warmup,
           "plain_samples_per_s": throughput["plain"], "ray_samples_per_s": throughput["ray"],
           "ray_startup_s": startups, **ratio("ray_vs_plain", spread)}
    result = {"benchmark": "train_overhead", "quick": args.quick, "rounds": rounds, "rows": [row],
              "note": "steady-state samples/s after warm-up steps, Ray Train (1 worker) over a plain loop"}
    print(f"plain loop {statistics.median(throughput['plain']):.1f} samples/s, Ray Train 1 worker "
          f"{statistics.median(throughput['ray']):.1f} samples/s (start-up excluded: "
          f"{statistics.median(startups):.1f} s); Ray / plain {describe(spread)}")
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
