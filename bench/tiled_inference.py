"""Tiled change detection (`rsforge detect`): what tiling costs on top of the model, and that peak
memory does not grow with the scene.

- `ratio_of_model_forward` (1024 x 1024 and 4096 x 4096): `rsforge.geo.tiling.detect` end to end
  (GeoTIFF reads, cutting tiles, the model, sigmoid, blending the overlaps, thresholding, writing the
  mask) against the model's bare mask forward over the same tiles in the same batches, on tensors
  already in memory: the pipeline's pixel throughput as a fraction of the model's. Rounds of the four
  (`pairs.py`), in this process, on one torch thread (`pairs.torch_threads`).
- `ratio_peak_memory` (4096 x 4096): the peak resident set size (`ru_maxrss`) of a process detecting it
  over that of one detecting 1024 x 1024, each in its own subprocess so each peak is its own. Tiles go a
  strip at a time, so the peak grows with the width, never the area, and hardly from 1k to 4k (16x the
  pixels). Rounds of the two subprocesses, in turns first (`pairs.py`): a peak hardly drifts with the
  machine's load, but the allocator's and the page cache's state do differ from run to run. 4k, not a
  larger scene: three rounds at 8k would cost more than the timed rounds and this bench's budget allows.

The model is a tiny untrained ViT + change-mask head (64 px tiles, overlap 16, 64 tiles a batch): the
cheaper the model, the larger the pipeline's share of the time, so `ratio_of_model_forward` is a lower
bound for real models. Writing the scenes leaves them in the page cache, so the I/O timed is decoding
and encoding GeoTIFFs, not the disk.

    python bench/tiled_inference.py [--quick] [--rounds N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
import torch
from pairs import describe, interleave, paired, ratio, timed, torch_threads
from rasterio.transform import from_origin

from rsforge.core.atomic import atomic_write_text
from rsforge.core.model import RSForgeModel
from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import parse_recipe
from rsforge.geo.tiling import TiledPredictor, detect, tile_starts

# Scene sides: detection is timed on both, and peak memory compared between them.
SIDES = (1024, 4096)
QUICK_SIDES = (256, 512)
TILE = 64
BATCH = 64


def tiny_mask_model() -> RSForgeModel:
    plugins = PluginManager()
    raw = {
        "name": "bench-mask",
        "encoder": {"name": "timm", "model_name": "vit_tiny_patch16_224", "image_size": TILE, "num_maps": 1,
                    "model_kwargs": {"patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}},
        "heads": [{"name": "change_mask", "hidden": 16}],
    }  # fmt: skip
    torch.manual_seed(0)
    return RSForgeModel.from_recipe(parse_recipe(raw, plugins.registry), plugins).eval()


def write_scene(path: Path, side: int, seed: int) -> None:
    """A side x side RGB GeoTIFF of noise, written strip by strip (the writer stays small too)."""
    rng = np.random.default_rng(seed)
    profile = {"driver": "GTiff", "width": side, "height": side, "count": 3, "dtype": "uint8",
               "crs": "EPSG:32631", "transform": from_origin(500000.0, 5000000.0, 1.0, 1.0),
               "tiled": True, "blockxsize": 256, "blockysize": 256}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, side, 256):
            h = min(256, side - row)
            block = rng.integers(0, 256, (3, h, side), dtype=np.uint8)
            dst.write(block, window=rasterio.windows.Window(0, row, side, h))


def detection_batches(predictor: TiledPredictor, side: int) -> list[int]:
    """The batch sizes detection runs on a side x side scene: each strip's row of tiles in chunks of
    `batch`. Not the tile count in full batches: on a CPU a smaller batch is faster per tile (its
    activations stay in cache), so the bare forward must get the very same batches."""
    starts = tile_starts(side, predictor.tile, predictor.stride)
    full, rest = divmod(len(starts), predictor.batch)
    return ([predictor.batch] * full + ([rest] if rest else [])) * len(starts)


def model_forward(model: RSForgeModel, sizes: list[int]):
    """The model's mask forward once per batch size in `sizes`, on random tiles already in memory."""
    tiles = torch.rand(max(sizes), 2, 3, TILE, TILE, generator=torch.Generator().manual_seed(0))

    def run() -> None:
        for n in sizes:
            model.mask_logits(tiles[:n])

    return run


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker(model_dir: str, before: str, after: str, out: str) -> dict:
    """Runs in the subprocess: load, warm up, then one detection; the process's peak memory. One thread, as
    in the timed rounds: two would not change the peak, only make the run's length erratic under load."""
    torch.set_num_threads(1)
    model = RSForgeModel.from_pretrained(model_dir)
    model.mask_logits(torch.rand(8, 2, 3, TILE, TILE))
    base = _max_rss_mib()
    stats = detect(model, before, after, out, batch=BATCH, progress=False)
    peak = _max_rss_mib()
    return {"peak_rss_mib": peak, "growth_mib": peak - base, "tiles": stats.tiles}


def peak_memory(model_dir: Path, before: Path, after: Path, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", str(model_dir), str(before), str(after), str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"bench worker for {before.name} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small scenes, two rounds (for the test suite)")
    parser.add_argument("--rounds", type=int, help="timed rounds, and peak memory rounds (default 2 quick, 3 full)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--worker", nargs=4, metavar=("MODEL", "BEFORE", "AFTER", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = worker(*args.worker)
        print(json.dumps(result))
        return result
    small, large = QUICK_SIDES if args.quick else SIDES
    rounds = args.rounds or (2 if args.quick else 3)

    model = tiny_mask_model()
    predictor = TiledPredictor(model, batch=BATCH)
    with tempfile.TemporaryDirectory(prefix="rsforge-bench-tiled-") as tmp:
        tmp = Path(tmp)
        scenes = {side: (tmp / f"before-{side}.tif", tmp / f"after-{side}.tif") for side in (small, large)}
        for side, (before, after) in scenes.items():
            write_scene(before, side, 0)
            write_scene(after, side, 1)
        model_dir = model.save_pretrained(tmp / "model")
        memory: dict[int, list[dict]] = {small: [], large: []}

        def peak(side: int):
            def run() -> float:
                memory[side].append(peak_memory(model_dir, *scenes[side], tmp / "out.tif"))
                return memory[side][-1]["peak_rss_mib"]

            return run

        peaks = interleave({f"peak {side}": peak(side) for side in (large, small)}, rounds, warmup=0,
                           desc=None if args.quick else "peak memory")

        variants = {}
        for side in (large, small):
            variants[f"forward {side}"] = timed(model_forward(model, detection_batches(predictor, side)))
            variants[f"detect {side}"] = timed(
                lambda side=side: detect(model, *scenes[side], tmp / "out.tif", batch=BATCH, progress=False))
        with torch_threads(1):
            # Warm-up: a full batch (the allocator's largest blocks) and the small scene; a whole round at
            # 4096 px would cost as much as a timed one.
            model_forward(model, [BATCH])()
            variants[f"forward {small}"]()
            variants[f"detect {small}"]()
            seconds = interleave(variants, rounds, warmup=0, desc=None if args.quick else "tiled detection")

    rows = []
    for side in (small, large):
        cost = paired(seconds[f"forward {side}"], seconds[f"detect {side}"])  # same tiles: time ratio = rate ratio
        rows.append({"size": f"{side}x{side}", "tiles": predictor.tile_count(side, side),
                     "detect_s": seconds[f"detect {side}"], "forward_s": seconds[f"forward {side}"],
                     **ratio("of_model_forward", cost)})
        print(f"{side}x{side}: detection over the bare model forward {describe(cost)}")
    grown, base = peaks[f"peak {large}"], peaks[f"peak {small}"]
    growth = paired(grown, base)
    rows.append({"size": f"{large}x{large}", "tiles": memory[large][0]["tiles"], "peak_rss_mib": grown,
                 "growth_mib": [m["growth_mib"] for m in memory[large]], "reference_peak_rss_mib": base,
                 **ratio("peak_memory", growth)})
    print(f"{large}x{large}: peak {min(grown):.0f}-{max(grown):.0f} MiB over {small}x{small}'s "
          f"{min(base):.0f}-{max(base):.0f} MiB: {describe(growth)}")
    result = {"benchmark": "tiled_inference", "quick": args.quick, "tile": TILE, "batch": BATCH, "rounds": rounds,
              "rows": rows}
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
