"""Feature cache: one training epoch of a frozen-encoder recipe with the on-disk encoder-feature cache
(warm: filled by an earlier epoch) against the same epoch decoding images and running the encoder
(`ratio_cached_vs_uncached`); and the cold epoch that fills an empty cache against the same
(`ratio_cold_fill_vs_uncached`).

Pure torch, in one process, with the worker loop's own dataset/collate for the cached path: the
difference is only where the encoder outputs come from. The recipe is tiny.yaml's captioner (no mask
head) with a ViT encoder far heavier than the trained bridges and decoder, as in real recipes (a frozen
ViT-L before a small trained bridge); `--quick` keeps tiny.yaml's encoder. Each round runs the three
epochs back to back, in turns first (`pairs.py`), after a warm-up round; one torch thread
(`pairs.torch_threads`).

    python bench/feature_cache.py [--quick] [--rounds N] [--json OUT]
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import yaml
from pairs import describe, interleave, paired, ratio, torch_threads
from torch.utils.data import DataLoader

from rsforge.core.atomic import atomic_write_text
from rsforge.core.model import RSForgeModel
from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import parse_recipe
from rsforge.datasets.loading import load_split, training_texts
from rsforge.datasets.torch_dataset import SampleDataset
from rsforge.train.feature_cache import FeatureCache
from rsforge.train.steps import build_optimizer, build_scheduler, seed_everything, train_step
from rsforge.train.worker_loop import CachedSampleDataset, make_collate

ROOT = Path(__file__).resolve().parents[1]


def epoch(model, samples, cache: FeatureCache | None, batch_size: int):
    """A measurement: the seconds of one training epoch over `samples`, features from `cache` if given."""
    dataset_cls = CachedSampleDataset if cache is not None else SampleDataset
    dataset = dataset_cls(samples, model.image_size, model.interpolation)
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=make_collate(cache), drop_last=True)
    cfg = model.recipe.train

    def run() -> float:
        optimizer = build_optimizer(model, cfg)
        scheduler = build_scheduler(optimizer, cfg, total_steps=len(loader))
        started = time.perf_counter()
        for batch in loader:
            train_step(model, batch, optimizer, scheduler, grad_clip=cfg.grad_clip)
        return time.perf_counter() - started

    return run


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny encoder, two rounds (for the test suite)")
    parser.add_argument("--rounds", type=int, help="timed rounds after a warm-up (default 2 quick, 5 full)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    pairs, size, encoder = (8, 32, {"patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}) if args.quick \
        else (32, 96, {"patch_size": 8, "embed_dim": 192, "depth": 6, "num_heads": 3})
    rounds = args.rounds or (2 if args.quick else 5)

    plugins = PluginManager()
    with tempfile.TemporaryDirectory() as tmp, torch_threads(1):
        raw = yaml.safe_load((ROOT / "recipes" / "tiny.yaml").read_text())
        raw["encoder"].update(image_size=size, model_kwargs=encoder, freeze=True)
        raw["decoder"]["config"]["max_position_embeddings"] = (size // encoder["patch_size"]) ** 2 + 64
        raw["heads"] = []  # a captioner: what trains is the bridges and the decoder, as in SCST/SFT recipes
        raw["data"].update(root=str(Path(tmp) / "data"), n=pairs, size=size)
        recipe = parse_recipe(raw, plugins.registry)
        samples = load_split(recipe, plugins, "train")
        recipe = recipe.prepared(training_texts(samples))
        batch = recipe.train.batch_size

        def fresh_model():
            seed_everything(0)
            return RSForgeModel.from_recipe(recipe, plugins)

        model = fresh_model()
        warm_cache = FeatureCache(Path(tmp) / "cache", model)  # filled by the warm-up round's first cached epoch
        fills = itertools.count()

        def cold() -> float:
            """An epoch filling a cache of its own, removed after: every call starts cold."""
            directory = Path(tmp) / f"cold-{next(fills)}"
            try:
                return epoch(model, samples, FeatureCache(directory, model), batch)()
            finally:
                shutil.rmtree(directory, ignore_errors=True)

        seconds = interleave({"uncached": epoch(fresh_model(), samples, None, batch),
                              "warm": epoch(model, samples, warm_cache, batch), "cold": cold},
                             rounds, desc=None if args.quick else "epochs")

    warm, cold_fill = paired(seconds["uncached"], seconds["warm"]), paired(seconds["uncached"], seconds["cold"])
    trained = len(samples) // batch * batch
    row = {"encoder": f"vit d={encoder['embed_dim']} x{encoder['depth']} @{size}px", "samples": trained,
           "uncached_samples_per_s": trained / statistics.median(seconds["uncached"]),
           "cached_samples_per_s": trained / statistics.median(seconds["warm"]),
           **{f"{name}_s": times for name, times in seconds.items()},
           **ratio("cached_vs_uncached", warm), **ratio("cold_fill_vs_uncached", cold_fill)}
    result = {"benchmark": "feature_cache", "quick": args.quick, "threads": 1, "rounds": rounds, "rows": [row],
              "note": "an epoch each; the warm cached epoch reads features a warm-up epoch wrote, the cold one fills "
                      "an empty cache"}
    print(f"without cache {row['uncached_samples_per_s']:.1f} samples/s, cached {row['cached_samples_per_s']:.1f} "
          f"samples/s: {describe(warm)}; the filling epoch: {describe(cold_fill)}")
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
