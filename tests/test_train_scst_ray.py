"""The SCST stage through Ray Train: `recipes/instructblip-scst-tiny.yaml` (SFT, then SCST on the seed's
learning signals, min-max normalised and uniformly weighted, with the V/E regulariser) trains with two
workers, logs each reward's raw mean per step, draws the reward curves and is evaluated at the end."""

from __future__ import annotations

import json

import pytest
import yaml

from rsforge.core.recipe import parse_recipe

from .conftest import ROOT

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def outcome(ray_session, plugins, tmp_path_factory):
    from rsforge.train.pipeline import run_recipe

    tmp = tmp_path_factory.mktemp("scst")
    raw = yaml.safe_load((ROOT / "recipes" / "instructblip-scst-tiny.yaml").read_text())
    raw["data"].update(root=str(tmp / "data"), n=24)
    raw["train"]["ray_workers"] = 2
    recipe = parse_recipe(raw, plugins.registry)
    return run_recipe(recipe, tmp / "run", plugins=plugins, progress=False), recipe


def test_scst_steps_follow_the_sft_steps_and_log_every_reward(outcome, plugins):
    from rsforge.datasets.loading import load_split

    result, recipe = outcome
    kinds = [h["kind"] for h in result.history]
    assert kinds[0] == "sft" and kinds[-1] == "scst"
    assert kinds == sorted(kinds, key=["sft", "scst"].index)  # one block per stage, in recipe order
    assert [h["step"] for h in result.history] == list(range(1, len(kinds) + 1))
    logged = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [h["step"] for h in logged] == [h["step"] for h in result.history]
    scst = [h for h in result.history if h["kind"] == "scst"]
    # The split lists each image once per reference caption; an SCST epoch rolls out on each image once
    # (2 workers, 4 images each per step).
    samples = load_split(recipe, plugins, "train")
    images = {s.images for s in samples}
    assert len(samples) > len(images) and len(scst) == -(-len(images) // 2) // 4
    text_rewards = [r.name for r in recipe.rewards if r.name != "varentropy"]
    assert text_rewards == ["cider_d", "length", "sde", "count_abs_error", "count_signed_error"]
    for record in scst:
        for name in text_rewards:
            assert {f"reward_{name}", f"greedy_{name}"} <= set(record), name
        for prefix in ("reward", "greedy"):  # raw means, each on its own scale
            assert 0.0 <= record[f"{prefix}_sde"] <= 1.0 and record[f"{prefix}_count_abs_error"] <= 0.0
            assert record[f"{prefix}_cider_d"] >= 0.0 and 0.0 <= record[f"{prefix}_length"] <= 16.0
        # min-max normalised and weighted 1/5 each: the combined reward lies in [0, 1]
        assert 0.0 <= record["reward"] <= 1.0 and 0.0 <= record["greedy_reward"] <= 1.0
        assert record["reg_varentropy"] >= 0.0
        assert 1.0 <= record["sample_tokens"] <= 8.0  # max_new_tokens of the stage
    assert all(h["lr"] <= 0.001 for h in scst)  # the stage's own learning rate, not train.lr


def test_the_report_draws_reward_curves_and_evaluates_the_final_model(outcome):
    result, _ = outcome
    report = result.report_dir
    assert (report / "reward_curve.png").stat().st_size > 0
    assert "![reward curve](reward_curve.png)" in (report / "summary.md").read_text()
    assert "CIDEr" in json.loads((report / "metrics.json").read_text())["model"]["captions/all"]
