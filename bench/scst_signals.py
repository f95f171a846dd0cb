"""SCST with the InstructBLIP-SCST seed's learning signals on the synthetic change-captioning set: each
signal's mean over the held-out (val + test) image pairs before and after SCST, and the held-out
CIDEr-D against the SFT model's (`ratio_cider_d_after_vs_before` > 1: SCST raised it).

The starting point is a deliberately under-trained SFT model (`recipes/tiny.yaml`, captions only, 4
epochs); SCST then runs `--steps` steps on the seed's signal set as `recipes/instructblip-scst.yaml` lists
it (CIDEr-D, length, SDE, the absolute and the signed count errors, min-max normalised and uniformly
weighted, and V/E with lambda 1e-4) but for NKL, whose embedding model cannot be loaded offline. Captions
are greedy decodes, scored on PTB-tokenized text as evaluation scores them; CIDEr-D's document
frequencies come from the training references. One torch thread (the model is tiny); seeds are fixed.

`--without length,sde` leaves signals out (an ablation: which signal moves CIDEr-D which way);
`--length-mode negative_bytes` scores length as the seed's public code does (minus the UTF-8 byte count)
instead of as its README does (the token count, maximised).

    python bench/scst_signals.py [--quick] [--mode rollout|teacher_forced] [--steps N] [--without S,..]
                                 [--length-mode tokens|negative_bytes] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml
from torch.utils.data import DataLoader

from rsforge.core.atomic import atomic_write_text
from rsforge.core.model import RSForgeModel
from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import StageConfig, parse_recipe
from rsforge.datasets.loading import load_split, training_texts
from rsforge.datasets.torch_dataset import SampleDataset, collate
from rsforge.train.reward_set import RewardSet
from rsforge.train.scst import batch_references, scst_step
from rsforge.train.steps import build_optimizer, build_scheduler, seed_everything, sft_step

ROOT = Path(__file__).resolve().parents[1]
SIGNALS = ["cider_d", "length", "sde", "count_abs_error", "count_signed_error"]


def recipe_for(data_root: Path, plugins: PluginManager, pairs: int, signals: list[str], length_mode: str):
    raw = yaml.safe_load((ROOT / "recipes" / "tiny.yaml").read_text())
    raw["heads"] = []  # captions only
    raw["data"] = {"name": "synth", "n": pairs, "seed": 0, "size": 32, "root": str(data_root)}
    options = {"length": {"mode": length_mode}}
    raw["rewards"] = [*({"name": name, "normalise": "minmax", **options.get(name, {})} for name in signals),
                      {"name": "varentropy", "weight": 0.0001}]
    raw["train"].update({"batch_size": 16, "lr": 0.003, "seed": 0})
    return parse_recipe(raw, plugins.registry)


def items(samples, image_size: int) -> list[dict]:
    dataset = SampleDataset(samples, image_size)
    return [dataset[i] for i in range(len(dataset))]


def signal_means(model, held_out: list[dict], rewards: RewardSet) -> dict[str, float]:
    """Each signal's mean raw score of the greedy captions (the running statistics are left alone)."""
    model.eval()
    sums: dict[str, float] = dict.fromkeys(rewards.names, 0.0)
    for batch in DataLoader(held_out, batch_size=64, collate_fn=collate):
        texts = model.generate(batch.images, batch.prompts, max_new_tokens=16).texts
        raw = rewards.score(texts, batch_references(batch), update=False).raw
        for name, values in raw.items():
            sums[name] += float(values.sum())
    return {name: total / len(held_out) for name, total in sums.items()}


def run(mode: str, signals: list[str], *, length_mode: str, sft_epochs: int, steps: int, pairs: int,
        data_root: Path) -> dict:
    plugins = PluginManager()
    recipe = recipe_for(data_root, plugins, pairs, signals, length_mode)
    train_samples = load_split(recipe, plugins, "train")
    recipe = recipe.prepared(training_texts(train_samples))
    seed_everything(0)
    model = RSForgeModel.from_recipe(recipe, plugins)
    pairs_once = list({s.images: s for s in train_samples}.values())  # SCST visits each image pair once
    held_out = items(load_split(recipe, plugins, "val") + load_split(recipe, plugins, "test"), model.image_size)

    generator = torch.Generator().manual_seed(0)
    loader = DataLoader(items(train_samples, model.image_size), batch_size=16, shuffle=True, collate_fn=collate,
                        generator=generator)
    optimizer = build_optimizer(model, recipe.train)
    scheduler = build_scheduler(optimizer, recipe.train, total_steps=sft_epochs * len(loader))
    for _ in range(sft_epochs):
        for batch in loader:
            sft_step(model, batch, optimizer, scheduler, grad_clip=1.0)

    rewards = RewardSet.from_recipe(recipe, plugins, [list(s.references) for s in pairs_once])
    before = signal_means(model, held_out, rewards)
    stage = StageConfig(kind="scst", scst_mode=mode, num_samples=4, max_new_tokens=16, temperature=0.5, lr=6e-4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=stage.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    loader = DataLoader(items(pairs_once, model.image_size), batch_size=16, shuffle=True, collate_fn=collate,
                        generator=generator)
    done = 0
    started = time.perf_counter()
    while done < steps:
        for batch in loader:
            scst_step(model, batch, optimizer, scheduler, rewards, stage, grad_clip=1.0)
            done += 1
            if done == steps:
                break
    seconds = time.perf_counter() - started
    return {"before": before, "after": signal_means(model, held_out, rewards), "scst_seconds": seconds,
            "held_out": len(held_out)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps on a small set (for the test suite)")
    parser.add_argument("--mode", choices=["rollout", "teacher_forced"], default="rollout", help="stage.scst_mode")
    parser.add_argument("--steps", type=int, help="SCST steps (default 150; quick: 3)")
    parser.add_argument("--without", default="", help="signals to leave out, comma-separated (not cider_d)")
    parser.add_argument("--length-mode", choices=["tokens", "negative_bytes"], default="tokens",
                        help="the length signal's mode: the README's token count or the code's minus bytes")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    sft_epochs, steps, pairs = (1, 3, 40) if args.quick else (4, 150, 160)
    steps = args.steps or steps
    left_out = [name for name in args.without.split(",") if name]
    if not set(left_out) <= set(SIGNALS) - {"cider_d"}:
        parser.error(f"--without: choose among {', '.join(SIGNALS[1:])}")
    signals = [name for name in SIGNALS if name not in left_out]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            measured = run(args.mode, signals, length_mode=args.length_mode, sft_epochs=sft_epochs, steps=steps,
                           pairs=pairs, data_root=Path(tmp) / "synth")
    finally:
        torch.set_num_threads(threads)
    before, after = measured["before"], measured["after"]
    rows = [{"signal": name, "before": round(before[name], 4), "after": round(after[name], 4)} for name in signals]
    rows[0]["ratio_cider_d_after_vs_before"] = after["cider_d"] / before["cider_d"] if before["cider_d"] > 0 else 1.0
    result = {"benchmark": "scst_signals", "quick": args.quick, "mode": args.mode, "signals": signals,
              "length_mode": args.length_mode,
              "scst_steps": steps, "held_out_captions": measured["held_out"],
              "scst_seconds": round(measured["scst_seconds"], 1), "rows": rows,
              "note": "held-out greedy captions, mean raw score per signal before and after SCST"}
    for row in rows:
        print(f"{row['signal']:>20}: {row['before']:8.4f} -> {row['after']:8.4f}")
    print(f"{args.mode} SCST, {steps} steps in {result['scst_seconds']} s; held-out CIDEr-D x"
          f"{rows[0]['ratio_cider_d_after_vs_before']:.2f}")
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
