"""Compute efficiency of a training step: the FLOP/s one SFT step of a small recipe achieves, as a
share of the FLOP/s of a plain square matmul of the same dtype on the same device, measured in the
same run (a roofline-style "how much of the machine does the model use").

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` over forward + backward of one step
(matmuls, convolutions and attention, as PyTorch counts them); the step is timed whole (forward,
backward, optimiser), so optimiser and elementwise work count as overhead, as they do in training.

Each round times a step and as many FLOPs of matmuls back to back (`pairs.py`, one ratio a round),
after a warm-up round. Torch runs on one thread (`pairs.torch_threads`), so on a CPU the share is of
one core's matmul rate.

    python bench/compute_efficiency.py [--quick] [--rounds N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import yaml
from pairs import describe, interleave, paired, ratio, torch_threads
from torch.utils.flop_counter import FlopCounterMode

from rsforge.core.atomic import atomic_write_text
from rsforge.core.batch import Batch
from rsforge.core.model import RSForgeModel
from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import parse_recipe
from rsforge.core.sample import Turn
from rsforge.train.steps import build_optimizer, build_scheduler, sft_step

ROOT = Path(__file__).resolve().parents[1]
CAPTIONS = ["a new building was built in the top left", "there is no change", "some trees were cut down",
            "a road was built across the scene", "the lake grew in the bottom right"]
QUESTION = "describe the changes between the two images"


def build_model(recipe_file: str, plugins: PluginManager) -> torch.nn.Module:
    raw = yaml.safe_load((ROOT / "recipes" / recipe_file).read_text())
    raw.pop("data", None)  # the step runs on in-memory batches, no dataset is read
    recipe = parse_recipe(raw, plugins.registry, source=recipe_file).prepared([QUESTION, *CAPTIONS])
    torch.manual_seed(0)
    return RSForgeModel.from_recipe(recipe, plugins)


def make_batch(model, batch_size: int, device: torch.device) -> Batch:
    g = torch.Generator().manual_seed(0)
    size = model.image_size
    conversations = [[Turn("user", QUESTION), Turn("assistant", CAPTIONS[i % len(CAPTIONS)])]
                     for i in range(batch_size)]
    return Batch(
        images=torch.rand(batch_size, model.num_images, 3, size, size, generator=g),
        conversations=conversations,
        masks=(torch.rand(batch_size, size, size, generator=g) > 0.8).float(),
        mask_valid=torch.ones(batch_size, dtype=torch.bool),
    ).to(device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_flops(model, batch: Batch) -> float:
    model.train()
    with FlopCounterMode(display=False) as counter:
        model(batch).total.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())  # a float: a measurement, not a row label


def step_seconds(model, batch: Batch, device: torch.device):
    """A measurement: the seconds of one full SFT step (forward, backward, optimiser)."""
    optimizer = build_optimizer(model, model.recipe.train)
    scheduler = build_scheduler(optimizer, model.recipe.train, 10_000)  # a long schedule: no step hits its end
    grad_clip = model.recipe.train.grad_clip

    def measure() -> float:
        synchronize(device)
        start = time.perf_counter()
        sft_step(model, batch, optimizer, scheduler, grad_clip=grad_clip)
        synchronize(device)
        return time.perf_counter() - start

    return measure


def matmul_seconds(n: int, dtype: torch.dtype, device: torch.device, calls: int):
    """A measurement: the mean seconds of an n x n matmul over `calls` calls in a row."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)

    def measure() -> float:
        synchronize(device)
        start = time.perf_counter()
        for _ in range(calls):
            a @ b
        synchronize(device)
        return (time.perf_counter() - start) / calls

    return measure


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny recipe, three rounds (for the test suite)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, help="timed rounds per batch size after a warm-up (default 3 quick, "
                        "11 full)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    # (recipe, batch sizes, rounds, matmul side)
    recipe_file, batches, rounds, n = ("tiny.yaml", [2], 3, 256) if args.quick else ("demo.yaml", [8, 32], 11, 1024)
    rounds = args.rounds or rounds
    rows = []
    with torch_threads(1):
        plugins = PluginManager()
        model = build_model(recipe_file, plugins).to(device)
        dtype = next(model.parameters()).dtype
        print(f"{recipe_file} on {device} ({torch.get_num_threads()} thread), {dtype}; matmul {n}x{n}; "
              f"{rounds} rounds")
        for batch_size in batches:
            batch = make_batch(model, batch_size, device)
            flops = step_flops(model, batch)
            # As many matmul FLOPs as the step's: both sides of a pair then sample the machine as long.
            matmul = matmul_seconds(n, dtype, device, calls=max(1, round(flops / (2 * n**3))))
            seconds = interleave({"matmul": matmul, "step": step_seconds(model, batch, device)}, rounds,
                                 desc=None if args.quick else f"batch {batch_size}")
            achieved = [flops / s for s in seconds["step"]]
            peak = [2 * n**3 / s for s in seconds["matmul"]]
            spread = paired(achieved, peak)
            rows.append({"recipe": recipe_file, "batch": batch_size, "flops_per_step": flops,
                         "step_s": seconds["step"], "matmul_s": seconds["matmul"],
                         "achieved_flop_s": statistics.median(achieved), "matmul_flop_s": statistics.median(peak),
                         **ratio("of_matmul_flops", spread)})
            print(f"batch {batch_size:>3}: {flops / 1e9:.2f} GFLOP/step, {statistics.median(achieved) / 1e9:.1f} "
                  f"GFLOP/s against the matmul's {statistics.median(peak) / 1e9:.1f}; share {describe(spread)}")
    result = {"benchmark": "compute_efficiency", "quick": args.quick, "device": str(device), "dtype": str(dtype),
              "threads": 1, "matmul_n": n, "rounds": rounds, "rows": rows}
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
