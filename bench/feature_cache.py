"""Feature cache: one training epoch of a frozen-encoder recipe with the on-disk encoder-feature cache
(warm: filled by an earlier epoch) against the same epoch decoding images and running the encoder
(target: >= 2x samples/s). The cold epoch that fills the cache is reported too.

Pure torch, in one process, with the worker loop's own dataset/collate for the cached path: the
difference is only where the encoder outputs come from. The recipe is tiny.yaml's captioner (no mask
head) with a ViT encoder far heavier than the trained bridges and decoder, as in real recipes (a frozen
ViT-L before a small trained bridge); `--quick` keeps tiny.yaml's encoder.

    python bench/feature_cache.py [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml
from torch.utils.data import DataLoader
from tqdm import tqdm

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


def epoch_throughput(model, samples, cache: FeatureCache | None, batch_size: int, desc: str) -> float:
    dataset_cls = CachedSampleDataset if cache is not None else SampleDataset
    dataset = dataset_cls(samples, model.image_size, model.interpolation)
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=make_collate(cache), drop_last=True)
    cfg = model.recipe.train
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, total_steps=len(loader))
    started = time.perf_counter()
    for batch in tqdm(loader, desc=desc, leave=False):
        train_step(model, batch, optimizer, scheduler, grad_clip=cfg.grad_clip)
    return len(loader) * batch_size / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny encoder, a few batches (for the test suite)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    pairs, size, encoder = (8, 32, {"patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}) if args.quick \
        else (48, 96, {"patch_size": 8, "embed_dim": 192, "depth": 6, "num_heads": 3})

    plugins = PluginManager()
    with tempfile.TemporaryDirectory() as tmp:
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
        cache = FeatureCache(Path(tmp) / "cache", model)
        uncached = epoch_throughput(fresh_model(), samples, None, batch, "without cache")
        cold = epoch_throughput(model, samples, cache, batch, "cache, cold")
        warm = epoch_throughput(model, samples, cache, batch, "cache, warm")

    row = {"encoder": f"vit d={encoder['embed_dim']} x{encoder['depth']} @{size}px", "samples": len(samples),
           "uncached_samples_per_s": round(uncached, 2), "cached_samples_per_s": round(warm, 2),
           "ratio_cached_vs_uncached": warm / uncached, "ratio_cold_fill_vs_uncached": cold / uncached}
    result = {"benchmark": "feature_cache", "quick": args.quick, "rows": [row],
              "note": "one epoch each; the warm cached epoch reads features written by the cold one; target >= 2x"}
    print(f"without cache {uncached:.1f} samples/s, cached {warm:.1f} samples/s "
          f"({row['ratio_cached_vs_uncached']:.2f}x; the filling epoch {row['ratio_cold_fill_vs_uncached']:.2f}x)")
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
