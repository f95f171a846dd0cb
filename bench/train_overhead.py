"""Ray Train overhead: `rsforge train` with one Ray worker against a plain PyTorch loop over the same
recipe, data, batches, optimizer and steps (target: Ray's steady-state throughput >= 90% of the loop's).

Steady state, and how it is measured: both runs log a wall-clock time per optimizer step; the
throughput is counted from the end of warm-up step W to the last step, so Ray's start-up (cluster,
controller, worker group, process group, the worker's imports and model build) and the final
checkpoint after the last step are excluded, while everything Ray adds per step (the DDP-prepared
model, the metrics log, the progress bar) is included. The Ray worker gets one CPU and Ray pins its
torch to one thread, so the plain loop runs with one torch thread too. The plain loop runs before
and after the Ray run and the faster of the two is the baseline.

    flock /tmp/rsforge-ray.lock python bench/train_overhead.py [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import ray
import torch
import yaml
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
    parser.add_argument("--quick", action="store_true", help="a few steps of the tiny recipe (for the test suite)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    pairs, warmup = (16, 1) if args.quick else (160, 5)

    plugins = PluginManager()
    owns_ray = not ray.is_initialized()
    with tempfile.TemporaryDirectory() as tmp:
        raw = yaml.safe_load((ROOT / "recipes" / "tiny.yaml").read_text())
        raw["data"].update(root=str(Path(tmp) / "data"), n=pairs)
        raw["train"].update(ray_workers=1, cpus_per_worker=1, epochs=1, checkpoint_every=0)
        recipe = parse_recipe(raw, plugins.registry)
        samples = load_split(recipe, plugins, "train")
        recipe = recipe.prepared(training_texts(samples))

        def plain() -> float:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return steady_throughput(plain_loop(recipe, samples, plugins), recipe.train.batch_size, warmup)
            finally:
                torch.set_num_threads(threads)

        plain_before = plain()
        if owns_ray:
            ray.init(num_cpus=2, log_to_driver=False, configure_logging=False)
        try:
            started = time.perf_counter()
            ray_times = ray_run(recipe, samples, plugins, Path(tmp) / "run")
            total = time.perf_counter() - started
        finally:
            if owns_ray:
                ray.shutdown()
        on_ray = steady_throughput(ray_times, recipe.train.batch_size, warmup)
        # The plain loop runs before and after Ray; the faster one is the baseline, so a machine that got
        # busier or quieter during the Ray run does not flatter Ray.
        plain = max(plain_before, plain())

    row = {"recipe": "tiny.yaml", "steps": len(ray_times), "warmup_steps": warmup,
           "plain_samples_per_s": round(plain, 2), "ray_samples_per_s": round(on_ray, 2),
           "ray_startup_s": round(total - (ray_times[-1] - ray_times[0]), 1),
           "ratio_ray_vs_plain": on_ray / plain}
    result = {"benchmark": "train_overhead", "quick": args.quick, "rows": [row],
              "note": "steady-state samples/s after warm-up; ratio >= 0.9 meets the 10% overhead target"}
    print(f"plain loop {plain:.1f} samples/s, Ray Train 1 worker {on_ray:.1f} samples/s, "
          f"ratio {row['ratio_ray_vs_plain']:.3f} (start-up excluded: {row['ray_startup_s']} s)")
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
