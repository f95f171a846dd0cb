"""What a user sees while training: one progress line per stage, no worker noise, logs in the run folder,
a one-line error naming the rank when a run fails, and nothing half-written left behind."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import pytest
import yaml

from rsforge.core.cli import main
from rsforge.core.errors import RunError
from rsforge.train.console import RunConsole

from .conftest import ROOT


def _record(step: int, stage: int = 1, stage_steps: int = 20, loss: float = 1.0) -> str:
    return json.dumps({"step": step, "stage": stage, "kind": "sft", "stage_step": step, "stage_steps": stage_steps,
                       "samples": 8, "loss": loss, "time": time.time()}) + "\n"


def test_the_console_prints_a_line_per_tenth_of_a_stage_without_redraws(tmp_path):
    path, out = tmp_path / "metrics.jsonl", io.StringIO()
    with RunConsole(path, stages=1, stream=out, interval=0.01):
        with path.open("a") as f:
            for step in range(1, 21):
                f.write(_record(step, loss=2.0 - step / 20))
                f.flush()
                time.sleep(0.002)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert 10 <= len(lines) <= 11, lines  # the first step and every tenth after it
    assert lines[-1].startswith("stage 1/1 sft  step 20/20 (100%)  loss 1.0000") and "samples/s" in lines[-1]


def test_a_resumed_run_shows_only_new_steps_and_follows_the_rewritten_file(tmp_path):
    """The restoring worker rewrites metrics.jsonl (cut back to its checkpoint, a new file): the console
    re-reads it and shows the steps past the checkpoint once."""
    path, out = tmp_path / "metrics.jsonl", io.StringIO()
    path.write_text("".join(_record(s, stage_steps=10) for s in range(1, 8)))
    with RunConsole(path, stages=1, from_step=5, stream=out, interval=0.01):
        time.sleep(0.05)
        rewritten = tmp_path / "tmp.jsonl"
        rewritten.write_text("".join(_record(s, stage_steps=10) for s in range(1, 6)))
        os.replace(rewritten, path)
        time.sleep(0.05)
        with path.open("a") as f:
            f.writelines(_record(s, stage_steps=10) for s in range(6, 11))
    steps = [line.split()[4] for line in out.getvalue().splitlines()]
    assert steps == ["6/10", "7/10", "8/10", "9/10", "10/10"]


def _small_mask_recipe(tmp_path: Path, **train) -> Path:
    raw = yaml.safe_load((ROOT / "recipes" / "change-mask-tiny.yaml").read_text())
    raw["data"].update(n=24, root=str(tmp_path / "data"))
    raw["train"].update(epochs=1, batch_size=8, **train)
    path = tmp_path / "mask.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.ray
def test_two_worker_mask_training_prints_progress_only(ray_session, tmp_path, capfd):
    """change-mask-tiny reads the ResNet's maps up to layer3: with two workers DDP used to wait for
    layer4's gradient and crash at step 1 (126 lines, 4 tracebacks)."""
    out = tmp_path / "run"
    assert main(["train", str(_small_mask_recipe(tmp_path)), "--workers", "2", "--out", str(out)]) == 0
    stdout, stderr = capfd.readouterr()
    progress = [line for line in stderr.splitlines() if line.startswith("stage 1/1 sft  step ")]
    assert progress and "(100%)" in progress[-1]
    for noise in ("RayTrainWorker", "TrainController", "Traceback", "PreemptionWatcher", "\r"):
        assert noise not in stderr + stdout, noise
    assert len([line for line in (stdout + stderr).splitlines() if not line.startswith("|")]) < 25
    assert "frozen 9 parameter tensors" in (out / "logs" / "worker-rank0.log").read_text()
    assert (out / "logs" / "worker-rank1.log").is_file()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage_step"] for r in records] == list(range(1, len(records) + 1))
    assert all(r["samples"] == 8 for r in records)


@pytest.mark.ray
def test_a_failed_run_is_one_line_and_leaves_no_folder(ray_session, tmp_path, plugins):
    from rsforge.core.recipe import load_recipe
    from rsforge.datasets.loading import load_split, training_texts
    from rsforge.train.ray_job import train_with_ray
    from rsforge.train.worker_loop import FailOnce

    recipe = load_recipe(_small_mask_recipe(tmp_path, ray_workers=2), plugins.registry)
    samples = load_split(recipe, plugins, "train")
    recipe = recipe.prepared(training_texts(samples))
    run_dir = tmp_path / "failed"
    with pytest.raises(RunError) as error:
        train_with_ray(recipe, samples, run_dir, plugins=plugins, progress=False,
                       fail_once=FailOnce(rank=1, step=1, marker=str(tmp_path / "died")))
    message = str(error.value)
    assert "\n" not in message and message.startswith("training failed on rank 1: ")
    assert f"{run_dir} removed" in message and not run_dir.exists()
    logs = Path(message.rsplit("worker logs: ", 1)[1].rstrip(")"))
    assert (logs / "worker-rank0.log").is_file()


class _Interrupted:
    def __init__(self, run_dir: Path, checkpoint: bool) -> None:
        self.run_dir, self.checkpoint = run_dir, checkpoint

    def fit(self):
        if self.checkpoint:
            (self.run_dir / "ray" / "checkpoint_0000002").mkdir(parents=True)
        raise KeyboardInterrupt


@pytest.mark.parametrize("checkpoint", [False, True])
def test_ctrl_c_says_how_to_resume_or_leaves_nothing(tmp_path, plugins, tiny_recipe, monkeypatch, checkpoint):
    from rsforge.train import ray_job

    run_dir = tmp_path / "run"
    monkeypatch.setattr(ray_job, "ensure_ray", lambda address: None)
    monkeypatch.setattr(ray_job, "trainer_for", lambda *a, **k: _Interrupted(run_dir, checkpoint))
    with pytest.raises(RunError) as error:
        ray_job.train_with_ray(tiny_recipe, [], run_dir, plugins=plugins, progress=False)
    if checkpoint:
        assert f"rsforge train --resume {run_dir}" in str(error.value) and (run_dir / "recipe.yaml").is_file()
    else:
        assert "removed" in str(error.value) and not run_dir.exists()
