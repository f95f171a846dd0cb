"""A 2-worker SCST run killed mid-stage and restarted from its checkpoint repeats the uninterrupted run's
per-step rewards and loss exactly.

`recipes/instructblip-scst-tiny.yaml` (the seed's signals, min-max normalised) trains two SCST stages with
two Ray workers, checkpointing every 2 steps: the seed code's teacher-forced step, then free rollouts.
Rank 1 dies after step CRASH_STEP, mid teacher-forced stage; Ray restarts both workers from the step-2
checkpoint. Everything a step's rewards depend on must come back: the running min and max of every
reward (reduced over both workers at each step, so rank 0's saved copy is every rank's), the running
mean reward, the model, optimizer and RNG state, and the position in the epoch.
"""

from __future__ import annotations

import pytest
import yaml

from rsforge.core.recipe import parse_recipe
from rsforge.datasets.loading import load_split, training_texts

from .conftest import ROOT

pytestmark = pytest.mark.ray

CRASH_STEP = 3


@pytest.fixture(scope="module")
def setup(ray_session, plugins, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scst-resume")
    raw = yaml.safe_load((ROOT / "recipes" / "instructblip-scst-tiny.yaml").read_text())
    raw["data"].update(root=str(tmp / "data"), n=16)  # 12 training images: 3 steps of 2 x 2 per stage
    scst = {"kind": "scst", "epochs": 1, "lr": 0.001, "num_samples": 2, "max_new_tokens": 6}
    raw["train"].update(batch_size=4, ray_workers=2, checkpoint_every=2, keep_checkpoints=1,
                        stages=[{**scst, "scst_mode": "teacher_forced"}, {**scst, "scst_mode": "rollout"}])
    recipe = parse_recipe(raw, plugins.registry)
    samples = load_split(recipe, plugins, "train")
    return recipe.prepared(training_texts(samples)), samples, tmp


def _train(setup, plugins, name, **kwargs):
    from rsforge.train.ray_job import train_with_ray

    recipe, samples, tmp = setup
    if "fail_once" in kwargs:  # Ray may restart the worker group once
        recipe = recipe.model_copy(update={"train": recipe.train.model_copy(update={"max_failures": 1})})
    return train_with_ray(recipe, samples, tmp / name, plugins=plugins, **kwargs).history


def test_a_killed_scst_run_resumes_with_the_same_rewards_and_loss(setup, plugins):
    from rsforge.train.worker_loop import FailOnce

    reference = _train(setup, plugins, "reference")
    assert [h["kind"] for h in reference] == ["scst"] * 6 and [h["stage"] for h in reference] == [1] * 3 + [2] * 3
    assert "running_mean_reward" in reference[0] and "running_mean_reward" not in reference[-1]
    assert any(h["advantage_abs"] > 0 for h in reference)  # the rewards vary: there is something to repeat

    marker = setup[2] / "crashed-once"
    resumed = _train(setup, plugins, "resumed", fail_once=FailOnce(rank=1, step=CRASH_STEP, marker=str(marker)))
    assert marker.read_text() == str(CRASH_STEP)  # the worker did die, after the step-2 checkpoint
    assert len(resumed) == len(reference)
    for got, want in zip(resumed, reference, strict=True):
        assert set(got) == set(want)
        assert {k: v for k, v in got.items() if k != "time"} == {k: v for k, v in want.items() if k != "time"}
