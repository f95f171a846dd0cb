"""The report folder of a run: metrics JSON, a markdown summary, a loss curve, before/after/mask panels."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt
import torch

from rsforge.core.atomic import atomic_write_text
from rsforge.core.batch import first_user_turns
from rsforge.core.sample import Sample
from rsforge.datasets.images import load_image
from rsforge.datasets.multispectral import shown_bands
from rsforge.datasets.torch_dataset import read_sample_mask

HEADLINE = [("captions/all", "BLEU-4"), ("captions/all", "METEOR"), ("captions/all", "ROUGE-L"),
            ("captions/all", "CIDEr"), ("mask", "f1"), ("mask", "iou")]


def format_table(model: dict, baselines: dict[str, dict] | None) -> str:
    """| metric | model | one column per baseline |; a dash where a baseline has no such metric."""
    names = list(baselines or {})
    lines = ["| " + " | ".join(["metric", "model", *names]) + " |", "|---|" + "---:|" * (1 + len(names))]
    for group, metrics in model.items():
        for key, value in metrics.items():
            cells = [f"{value:.4f}"]
            for name in names:
                base = baselines[name].get(group, {}).get(key)
                cells.append("–" if base is None else f"{base:.4f}")
            lines.append(f"| {group}/{key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def best_baseline(baselines: dict[str, dict], group: str, key: str) -> tuple[str, float] | None:
    """The baseline scoring highest on `group`/`key` (every headline metric is higher-is-better)."""
    scores = [(name, b[group][key]) for name, b in baselines.items() if key in b.get(group, {})]
    return max(scores, key=lambda item: item[1]) if scores else None


def headline_rows(model: dict, baselines: dict[str, dict]) -> list[tuple[str, float, float, str]]:
    rows = []
    for group, key in HEADLINE:
        best = best_baseline(baselines, group, key) if key in model.get(group, {}) else None
        if best is not None:
            rows.append((f"{key} ({group.split('/')[0]})", model[group][key], best[1], best[0]))
    return rows


def headline_table(model: dict, baselines: dict[str, dict]) -> str:
    """The model beside the best trivial baseline of each headline metric, as `rsforge run` prints it."""
    lines = [f"{'metric':<22} {'model':>8} {'baseline':>9}  best baseline"]
    for name, value, base, which in headline_rows(model, baselines):
        flag = "" if value > base else "  <- not above baseline"
        lines.append(f"{name:<22} {value:>8.4f} {base:>9.4f}  {which}{flag}")
    return "\n".join(lines)


def is_reward(key: str) -> bool:
    """SCST's per-step rewards: of the rollouts (`reward`, `reward_<name>`) and of the greedy baseline."""
    return key.startswith(("reward", "greedy"))


def is_loss(key: str) -> bool:
    return key == "lm" or "loss" in key or key.startswith(("mask_", "class_", "reg_"))


def curve_keys(history: list[dict], rewards: bool) -> list[str]:
    """Per-step values to draw, in first-seen order: the rewards, or the losses."""
    wanted = is_reward if rewards else is_loss
    keys: dict[str, None] = {}
    for record in history:
        keys.update({key: None for key, value in record.items() if isinstance(value, float) and wanted(key)})
    return list(keys)


def plot_curves(history: list[dict], path: Path, *, rewards: bool = False) -> bool:
    """Loss curves (or, `rewards`, the SCST reward curves) over the steps; stage boundaries dashed.
    False (and no file) when the history has no such value."""
    keys = curve_keys(history, rewards)
    if not keys:
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in keys:
        points = [(h["step"], h[key]) for h in history if key in h]
        ax.plot([p[0] for p in points], [p[1] for p in points], label=key, linewidth=1.2)
    for before, after in itertools.pairwise(history):
        if before.get("stage") != after.get("stage"):
            ax.axvline(after["step"] - 0.5, color="gray", linestyle="--", linewidth=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("reward" if rewards else "loss")
    ax.set_title(f"training {'rewards' if rewards else 'loss'} (rank 0)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_panels(model, samples: list[Sample], predictions: dict[str, str], path: Path) -> None:
    """One row per sample: before | after | reference mask | predicted mask, captions as titles. A text-guided
    head is given the sample's own prompt; K-class masks are drawn in one colour per class id."""
    fig, axes = plt.subplots(len(samples), 4, figsize=(12, 3.6 * len(samples)), squeeze=False,
                             gridspec_kw={"hspace": 0.5, "wspace": 0.05})
    size = model.image_size
    for row, sample in zip(axes, samples, strict=True):
        before, after = (load_image(p, size, interpolation=model.interpolation, channels=model.in_chans)
                         for p in sample.images)
        with torch.no_grad():
            prompt = first_user_turns([sample.conversation])
            pred = model.predict_mask(before[None], after[None], instructions=prompt)[0]
        reference = read_sample_mask(sample, size)
        bands = sample.meta.get("bands")  # multispectral dates are drawn in true colour
        panels = [shown_bands(before, bands).permute(1, 2, 0), shown_bands(after, bands).permute(1, 2, 0),
                  torch.zeros(size, size) if reference is None else reference, pred]
        titles = ["before", "after", "reference mask", "predicted mask"]
        for ax, image, title in zip(row, panels, titles, strict=True):
            if image.dtype == torch.int64:  # class ids
                ax.imshow(image.numpy(), cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
            else:
                ax.imshow(image.float().numpy(), cmap="gray" if image.dim() == 2 else None, vmin=0, vmax=1)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        reference = sample.references[0] if sample.references else ""
        row[0].text(0, -0.06, f"model: {predictions.get(sample.id, '')}\nreference: {reference}",
                    transform=row[0].transAxes, va="top", fontsize=8)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def write_report(
    out: Path, *, recipe_name: str, split: str, model_metrics: dict, baselines: dict[str, dict] | None,
    history: list[dict], predictions: list[dict], model, panel_samples: list[Sample], seconds: dict[str, float],
) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    payload = {"recipe": recipe_name, "split": split, "model": model_metrics, "baselines": baselines,
               "seconds": seconds}
    atomic_write_text(out / "metrics.json", json.dumps(payload, indent=2))
    atomic_write_text(out / "predictions.jsonl", "".join(json.dumps(p) + "\n" for p in predictions))
    plot_curves(history, out / "loss_curve.png")
    has_rewards = plot_curves(history, out / "reward_curve.png", rewards=True)
    if panel_samples and model.mask_heads:
        plot_panels(model, panel_samples, {p["id"]: p["prediction"] for p in predictions}, out / "panels.png")
    summary = [f"# {recipe_name}: evaluation on the {split} split", "",
               "Baselines: " + ", ".join(baselines) + " (trivial predictors scored like the model)." if baselines
               else "", "", format_table(model_metrics, baselines), "",
               "Timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()), "",
               "![loss curve](loss_curve.png)", "",
               "![reward curve](reward_curve.png)" if has_rewards else "",
               "![panels](panels.png)" if panel_samples else ""]
    atomic_write_text(out / "summary.md", "\n".join(summary) + "\n")
    return out
