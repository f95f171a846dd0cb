"""Tiled change detection (`rsforge detect`): throughput and peak memory as the scene grows.

Each scene size runs in its own subprocess, so each peak is its own: the peak resident set size
(`ru_maxrss`) of the whole process, and its growth during detection over the process after loading
the model and warming up. Tiles are processed a strip at a time, so the peak should hardly move
from 1k x 1k to 8k x 8k (64x the pixels); `ratio_peak_memory` is each size's peak over the
smallest's (the bound: <= 1.5x) and `ratio_throughput` its megapixels/s over the smallest's.
The model is a tiny untrained ViT + change-mask head (64 px tiles, overlap 16): the numbers measure
the tiling pipeline (reads, blending, writes), not a real model's compute.

    python bench/tiled_inference.py [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = (1024, 4096, 8192)
QUICK_SIZES = (256, 512, 1024)
TILE = 64


def build_model(out: Path) -> Path:
    import torch

    from rsforge.core.model import RSForgeModel
    from rsforge.core.plugins import PluginManager
    from rsforge.core.recipe import parse_recipe

    plugins = PluginManager()
    raw = {
        "name": "bench-mask",
        "encoder": {"name": "timm", "model_name": "vit_tiny_patch16_224", "image_size": TILE, "num_maps": 1,
                    "model_kwargs": {"patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}},
        "heads": [{"name": "change_mask", "hidden": 16}],
    }  # fmt: skip
    torch.manual_seed(0)
    return RSForgeModel.from_recipe(parse_recipe(raw, plugins.registry), plugins).eval().save_pretrained(out)


def write_scene(path: Path, side: int, seed: int) -> None:
    """A side x side RGB GeoTIFF of noise, written strip by strip (the writer stays small too)."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    profile = {"driver": "GTiff", "width": side, "height": side, "count": 3, "dtype": "uint8",
               "crs": "EPSG:32631", "transform": from_origin(500000.0, 5000000.0, 1.0, 1.0),
               "tiled": True, "blockxsize": 256, "blockysize": 256}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, side, 256):
            h = min(256, side - row)
            block = rng.integers(0, 256, (3, h, side), dtype=np.uint8)
            dst.write(block, window=rasterio.windows.Window(0, row, side, h))


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker(model_dir: str, before: str, after: str, out: str) -> dict:
    """Runs in the subprocess: load, warm up, then one timed detection."""
    import torch

    from rsforge.core.model import RSForgeModel
    from rsforge.geo.tiling import detect

    torch.set_num_threads(2)
    model = RSForgeModel.from_pretrained(model_dir)
    with torch.no_grad():
        model.mask_logits(torch.rand(8, 2, 3, TILE, TILE))
    base = _max_rss_mib()
    start = time.perf_counter()
    stats = detect(model, before, after, out, batch=64, progress=False)
    seconds = time.perf_counter() - start
    peak = _max_rss_mib()
    return {"seconds": seconds, "peak_rss_mib": peak, "growth_mib": peak - base, "tiles": stats.tiles}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small scenes (seconds), as the test suite runs it")
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--worker", nargs=4, metavar=("MODEL", "BEFORE", "AFTER", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = worker(*args.worker)
        print(json.dumps(result))
        return result

    rows = []
    with tempfile.TemporaryDirectory(prefix="rsforge-bench-tiled-") as tmp:
        tmp = Path(tmp)
        model = build_model(tmp / "model")
        for side in QUICK_SIZES if args.quick else SIZES:
            before, after = tmp / f"before-{side}.tif", tmp / f"after-{side}.tif"
            write_scene(before, side, 0)
            write_scene(after, side, 1)
            cmd = [sys.executable, __file__, "--worker", str(model), str(before), str(after), str(tmp / "out.tif")]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode:
                raise RuntimeError(f"bench worker for {side} px failed:\n{done.stderr[-2000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append({"size": f"{side}x{side}", "tiles": result["tiles"],
                         "mp_per_s": side * side / 1e6 / result["seconds"],
                         "peak_rss_mib": result["peak_rss_mib"], "growth_mib": result["growth_mib"]})  # fmt: skip
            for path in (before, after):
                path.unlink()
    for row in rows:
        row["ratio_throughput"] = row["mp_per_s"] / rows[0]["mp_per_s"]
        row["ratio_peak_memory"] = row["peak_rss_mib"] / rows[0]["peak_rss_mib"]
    print(f"{'scene':>11} {'tiles':>7} {'MP/s':>7} {'peak MiB':>9} {'growth MiB':>11} {'x MP/s':>7} {'x peak':>7}")
    for r in rows:
        print(f"{r['size']:>11} {r['tiles']:>7} {r['mp_per_s']:>7.2f} {r['peak_rss_mib']:>9.0f} "
              f"{r['growth_mib']:>11.0f} {r['ratio_throughput']:>7.2f} {r['ratio_peak_memory']:>7.2f}")
    result = {"benchmark": "tiled_inference", "quick": args.quick, "tile": TILE, "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
