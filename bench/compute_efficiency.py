"""Compute efficiency of a training step: the FLOP/s one SFT step of a small recipe achieves, as a
share of the FLOP/s of a plain square matmul of the same dtype on the same device, measured in the
same run (a roofline-style "how much of the machine does the model use").

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` over forward + backward of one step
(matmuls, convolutions and attention, as PyTorch counts them); the step is timed whole (forward,
backward, optimiser), so optimiser and elementwise work count as overhead, as they do in training.

    python bench/compute_efficiency.py [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

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


def step_seconds(model, batch: Batch, steps: int, device: torch.device) -> float:
    """Best time of one full SFT step (forward, backward, optimiser) over `steps` steps after a warm-up."""
    optimizer = build_optimizer(model, model.recipe.train)
    scheduler = build_scheduler(optimizer, model.recipe.train, steps + 2)
    grad_clip = model.recipe.train.grad_clip
    sft_step(model, batch, optimizer, scheduler, grad_clip=grad_clip)  # warm-up: allocator, lazy inits
    best = float("inf")
    for _ in tqdm(range(steps), desc="train steps", leave=False):
        synchronize(device)
        start = time.perf_counter()
        sft_step(model, batch, optimizer, scheduler, grad_clip=grad_clip)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def matmul_flops_per_second(n: int, dtype: torch.dtype, device: torch.device, repeats: int) -> float:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny recipe, few steps (for the test suite)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    # (recipe, batch sizes, timed steps, matmul side, matmul repeats)
    recipe_file, batches, steps, n, repeats = (
        ("tiny.yaml", [2], 2, 256, 10) if args.quick else ("demo.yaml", [8, 32], 3, 1024, 10)
    )
    plugins = PluginManager()
    model = build_model(recipe_file, plugins).to(device)
    dtype = next(model.parameters()).dtype
    peak = matmul_flops_per_second(n, dtype, device, repeats)
    print(f"{recipe_file} on {device} ({torch.get_num_threads()} threads), {dtype}; "
          f"matmul {n}x{n}: {peak / 1e9:.1f} GFLOP/s")
    print(f"{'batch':>5} {'GFLOP/step':>11} {'step ms':>8} {'GFLOP/s':>8} {'of matmul':>10}")
    rows = []
    for batch_size in batches:
        batch = make_batch(model, batch_size, device)
        flops = step_flops(model, batch)
        seconds = step_seconds(model, batch, steps, device)
        achieved = flops / seconds
        rows.append({"recipe": recipe_file, "batch": batch_size, "flops_per_step": flops, "step_s": seconds,
                     "achieved_flop_s": achieved, "matmul_flop_s": peak, "ratio_of_matmul_flops": achieved / peak})
        print(f"{batch_size:>5} {flops / 1e9:>11.2f} {seconds * 1000:>8.1f} {achieved / 1e9:>8.1f} "
              f"{achieved / peak:>9.1%}")
    result = {"benchmark": "compute_efficiency", "quick": args.quick, "device": str(device), "dtype": str(dtype),
              "threads": torch.get_num_threads(), "matmul_n": n, "rows": rows}
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
