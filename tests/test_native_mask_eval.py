"""Change masks scored at the data's native resolution, checked against numpy on the real LEVIR-CD
sample of `../shared/data`, and the mask-only paths of `rsforge eval` and the report.

The model here is a pixel-wise rule (change where the dates' mean colour differs by more than 0.1):
its tiled, blended prediction of a scene must equal the rule applied to the whole scene, which numpy
computes independently, so the counts test the native-resolution path, not a model.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import rsforge.core.cli as cli
from rsforge.datasets.levir import read_levir_cd
from rsforge.tasks.evaluate import evaluate_baselines, evaluate_mask_task
from rsforge.tasks.mask_eval import evaluate_masks, mask_baselines

from .mask_model import train_tiny_mask_model

LEVIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "levir_cd"
needs_levir = pytest.mark.skipif(not LEVIR.is_dir(), reason=f"{LEVIR} is absent")
THRESHOLD = 0.1


class ColourDifference(nn.Module):
    """mask_logits: +/- a large logit where the dates' channel-mean differs by more than THRESHOLD."""

    def __init__(self, image_size: int = 64, resolution: str = "native") -> None:
        super().__init__()
        self.image_size, self.tile, self.interpolation, self.in_chans = image_size, image_size, "bilinear", 3
        self.mask_heads, self.decoder = [SimpleNamespace(predicts_mask=True)], None
        self.heads = self.mask_heads
        eval_cfg = SimpleNamespace(mask_resolution=resolution, tile=None, overlap=None)
        self.recipe = SimpleNamespace(name="colour-difference", eval=eval_cfg, heads=[SimpleNamespace()])

    def mask_logits(self, images: torch.Tensor, instructions=None) -> torch.Tensor:
        diff = (images[:, 1].mean(1) - images[:, 0].mean(1)).abs()
        return torch.where(diff > THRESHOLD, 20.0, -20.0)[:, None]

    def predict_mask(self, before, after, threshold: float = 0.5, instructions=None) -> torch.Tensor:
        return self.mask_logits(torch.stack([before, after], 1))[:, 0] > 0


def numpy_counts(samples) -> dict[str, int]:
    tp = fp = fn = tn = 0
    for s in samples:
        a, b = (np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255 for p in s.images)
        pred = np.abs(b.mean(-1) - a.mean(-1)) > THRESHOLD
        label = np.asarray(Image.open(s.mask)) == 255
        tp += int((pred & label).sum())
        fp += int((pred & ~label).sum())
        fn += int((~pred & label).sum())
        tn += int((~pred & ~label).sum())
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn}


@needs_levir
def test_native_resolution_counts_every_pixel_as_numpy_does():
    samples = read_levir_cd(LEVIR, "test")
    assert len(samples) == 3
    confusion, changed = evaluate_masks(ColourDifference(), samples, progress=False)
    expected = numpy_counts(samples)
    assert {k: getattr(confusion, k) for k in expected} == expected
    assert sum(expected.values()) == 3 * 256 * 256  # every native pixel, none resized away
    assert sum(changed) == expected["tp"] + expected["fp"]


@needs_levir
def test_model_resolution_scores_a_thumbnail():
    samples = read_levir_cd(LEVIR, "test")
    evaluation = evaluate_mask_task(ColourDifference(resolution="model"), samples)
    assert {"f1", "iou"} <= set(evaluation.metrics["mask"])
    confusion, _ = evaluate_masks(ColourDifference(), samples, progress=False)
    assert evaluation.metrics["mask"] != confusion.compute()  # 64x64 thumbnails are not the native pixels


@needs_levir
def test_trivial_masks_on_the_real_labels():
    samples = read_levir_cd(LEVIR, "test")
    labels = np.concatenate([(np.asarray(Image.open(s.mask)) == 255).ravel() for s in samples])
    p = labels.mean()
    baselines = mask_baselines(samples, resolution="native", image_size=64)
    zero, changed = baselines["all-zero mask"]["mask"], baselines["all-changed mask"]["mask"]
    assert zero["f1"] == 0 and zero["oa"] == pytest.approx(1 - p)
    assert changed["f1"] == pytest.approx(2 * p / (1 + p)) and changed["iou"] == pytest.approx(p)
    # a mask-only model has no training answers: only the mask baselines, no caption rows
    assert set(evaluate_baselines(ColourDifference(), samples, samples)) == {"all-zero mask", "all-changed mask"}


@needs_levir
def test_eval_change_mask_command(tmp_path, capsys):
    model_dir = train_tiny_mask_model(tmp_path / "trained")
    out = tmp_path / "eval"
    code = cli.main(["eval", "--model", str(model_dir), "--format", "levir_cd", "--root", str(LEVIR),
                     "--task", "change_mask", "--out", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert set(metrics) == {"mask", "mask (all-zero mask)", "mask (all-changed mask)"}
    assert metrics["mask (all-changed mask)"]["recall"] == 1.0
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [s.id for s in read_levir_cd(LEVIR, "test")]
    assert "| mask (all-zero mask) | f1 | 0.0000 |" in stdout


SHARED = LEVIR.parent


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} is absent")
def test_shared_recipe_trains_on_the_other_datasets_and_scores_levir(plugins, monkeypatch):
    from rsforge.core.recipe import load_recipe
    from rsforge.datasets.loading import load_split

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)  # the recipe's folders are relative to the repository root
    recipe = load_recipe(root / "recipes" / "levir-cd-tiny-shared.yaml", plugins.registry)
    train, test = load_split(recipe, plugins, "train"), load_split(recipe, plugins, "test")
    folders = sorted({Path(s.images[0]).parents[1].name for s in train})
    assert folders == ["dsifn_cd", "oscd", "sztaki_airchange"] and len(train) == 8  # each pair once
    assert len(test) == 3 and {Path(s.images[0]).parents[1].name for s in test} == {"levir_cd"}
