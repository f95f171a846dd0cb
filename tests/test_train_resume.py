"""Checkpoints, failure recovery and `rsforge train --resume` with two Ray workers on the CPU.

Every run trains the same tiny recipe with the same seed, in two stages (sft, then mask, 3 optimizer
steps each), checkpointing every 2 optimizer steps. A worker that dies (rank 1 exits hard at step 4,
the first of the mask stage) is restarted by Ray from the step-2 checkpoint, mid sft epoch. A run that
checkpoints per epoch and stops at step 5 is continued by `--resume` from the step-3 checkpoint, taken
at the boundary of the two stages (the mask stage's optimizer then starts afresh). Both must reproduce
the uninterrupted run's loss curve step for step: optimizer, schedule, RNG and the position inside
the epoch all come back.
"""

from __future__ import annotations

import json

import pytest
import yaml

from rsforge.core.cli import main
from rsforge.core.recipe import parse_recipe
from rsforge.datasets.loading import load_split, training_texts

from .conftest import ROOT

pytestmark = pytest.mark.ray

CRASH_STEP = 4
STOP_STEP = 5


@pytest.fixture(scope="module")
def setup(ray_session, plugins, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    raw = yaml.safe_load((ROOT / "recipes" / "tiny.yaml").read_text())
    raw["data"].update(root=str(tmp / "data"), n=12)
    raw["train"].update(ray_workers=2, checkpoint_every=2, keep_checkpoints=1,
                        stages=[{"kind": "sft", "epochs": 1}, {"kind": "mask", "epochs": 1, "lr": 0.001}])
    recipe = parse_recipe(raw, plugins.registry)
    samples = load_split(recipe, plugins, "train")
    return recipe.prepared(training_texts(samples)), samples, tmp


def _train(setup, plugins, name, train=None, **kwargs):
    from rsforge.train.ray_job import train_with_ray

    recipe, samples, tmp = setup
    if train:  # how often to checkpoint, how often to restart: neither changes the loss curve
        recipe = recipe.model_copy(update={"train": recipe.train.model_copy(update=train)})
    return train_with_ray(recipe, samples, tmp / name, plugins=plugins, **kwargs), tmp / name


def _logged_steps(run_dir):
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(setup, plugins):
    result, run_dir = _train(setup, plugins, "reference")
    return result.history, run_dir


def _assert_same_curve(history, reference):
    assert [h["step"] for h in history] == [h["step"] for h in reference]
    for got, want in zip(history, reference, strict=True):
        assert (got["stage"], got["epoch"]) == (want["stage"], want["epoch"])
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-4, abs=1e-5), got["step"]
        assert got["lr"] == pytest.approx(want["lr"], rel=1e-6)


def test_uninterrupted_run_logs_every_step_and_keeps_the_best_checkpoints(reference, setup):
    history, run_dir = reference
    recipe = setup[0]
    assert len(history) >= 5 and [h["kind"] for h in history][CRASH_STEP - 2:CRASH_STEP] == ["sft", "mask"]
    assert [h["step"] for h in history] == list(range(1, len(history) + 1))
    assert _logged_steps(run_dir) == [h["step"] for h in history]
    checkpoints = sorted(p.name for p in (run_dir / "ray").glob("checkpoint_0*"))
    # keep_checkpoints=1: the best one by train loss, plus the latest, which Ray always keeps.
    assert 1 <= len(checkpoints) <= 2 and checkpoints[-1] == f"checkpoint_{len(history):07d}"
    assert (run_dir / "recipe.yaml").is_file() and recipe.train.checkpoint_every == 2
    # Every worker's RNG state is in the (merged) checkpoint, beside rank 0's model and train state.
    latest = run_dir / "ray" / checkpoints[-1]
    assert {"model", "train_state.pt", "history.json", "rng_rank0.pt", "rng_rank1.pt"} <= {
        p.name for p in latest.iterdir()}


def test_a_dead_worker_is_restarted_from_the_last_checkpoint(setup, plugins, reference):
    from rsforge.train.worker_loop import FailOnce

    marker = setup[2] / "crashed-once"
    result, run_dir = _train(setup, plugins, "recovered", train={"max_failures": 1},
                             fail_once=FailOnce(rank=1, step=CRASH_STEP, marker=str(marker)))
    assert marker.read_text() == str(CRASH_STEP)  # the worker did die
    _assert_same_curve(result.history, reference[0])
    # The log was cut back to the checkpoint (step 2) on restore: step 3 is not there twice.
    assert _logged_steps(run_dir) == list(range(1, len(reference[0]) + 1))


def test_resume_continues_a_stopped_run(setup, plugins, reference, capsys):
    from rsforge.train.worker_loop import FailOnce

    tmp = setup[2]
    with pytest.raises(Exception, match=r"(?i)fail|died|exit"):  # max_failures=0: the run stops
        _train(setup, plugins, "stopped", train={"checkpoint_every": 0},
               fail_once=FailOnce(rank=1, step=STOP_STEP, marker=str(tmp / "stop")))
    run_dir = tmp / "stopped"
    assert max(_logged_steps(run_dir)) <= STOP_STEP
    assert [p.name for p in (run_dir / "ray").glob("checkpoint_0*")] == ["checkpoint_0000003"]  # end of sft

    with pytest.raises(FileExistsError, match="--resume"):
        _train(setup, plugins, "stopped")
    assert main(["train", "--resume", str(run_dir)]) == 0
    history = json.loads(
        (sorted((run_dir / "ray").glob("checkpoint_0*"))[-1] / "history.json").read_text())
    _assert_same_curve(history, reference[0])
    assert _logged_steps(run_dir) == list(range(1, len(reference[0]) + 1))
    # `rsforge train` evaluates the final model on the val split and draws the curves.
    metrics = json.loads((run_dir / "report" / "metrics.json").read_text())
    assert metrics["split"] == "val" and "captions/all" in metrics["model"]
    assert (run_dir / "report" / "loss_curve.png").is_file()
    assert "report:" in capsys.readouterr().out
