"""Pieces of the training service that need no Ray cluster: the metrics log, fault injection, curves, and
the samples an SCST epoch visits."""

from __future__ import annotations

import json

import pytest

from rsforge.core.sample import Sample, Turn
from rsforge.train.report import curve_keys, plot_curves
from rsforge.train.run_log import MetricsLog
from rsforge.train.worker_loop import FailOnce, one_per_image


def test_metrics_log_restarts_at_the_checkpoint_and_drops_a_torn_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in (1, 2, 3)) + '{"step": 4, "lo')
    log = MetricsLog(path, restored_step=2)
    log.write({"step": 3, "loss": 0.5})
    log.close()
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3]
    assert json.loads(path.read_text().splitlines()[-1])["loss"] == 0.5  # the new step 3, not the old one
    fresh = MetricsLog(tmp_path / "new.jsonl", restored_step=0)
    fresh.close()
    assert (tmp_path / "new.jsonl").read_text() == ""


def test_fail_once_fires_only_for_its_rank_and_step_and_only_once(tmp_path, monkeypatch):
    exits = []
    monkeypatch.setattr("os._exit", exits.append)
    fail = FailOnce(rank=1, step=3, marker=str(tmp_path / "marker"))
    fail.check(rank=0, step=3)
    fail.check(rank=1, step=2)
    assert exits == []
    fail.check(rank=1, step=3)
    fail.check(rank=1, step=3)
    assert exits == [1] and (tmp_path / "marker").read_text() == "3"


@pytest.mark.parametrize("rewards", [False, True])
def test_loss_and_reward_curves_pick_their_own_keys(tmp_path, rewards):
    history = [{"step": 1, "stage": 1, "kind": "sft", "epoch": 1, "lr": 1e-3, "time": 5.0, "lm": 2.0, "loss": 2.5,
                "mask_change_mask": 0.5},
               {"step": 2, "stage": 2, "kind": "scst", "epoch": 1, "lr": 1e-3, "time": 6.0, "loss": 1.0,
                "policy_loss": 1.0, "reward": 0.2, "greedy_reward": 0.1, "reward_cider_d": 0.3, "sample_tokens": 5.0}]
    keys = curve_keys(history, rewards)
    if rewards:
        assert keys == ["reward", "greedy_reward", "reward_cider_d"]
    else:
        assert keys == ["lm", "loss", "mask_change_mask", "policy_loss"]
    assert plot_curves(history, tmp_path / "curve.png", rewards=rewards)
    assert (tmp_path / "curve.png").stat().st_size > 1000
    assert not plot_curves(history[:1], tmp_path / "none.png", rewards=True)
    assert not (tmp_path / "none.png").exists()


def test_an_scst_epoch_visits_each_image_once_per_prompt():
    """A captioning split lists an image once per reference caption; SCST rolls out on it once, scored
    against all of them. Two questions about one image stay two samples."""
    def caption(i, text, refs=()):
        return Sample(id=f"c{i}", images=("a.png", "b.png"), task="change_captioning", references=list(refs),
                      conversation=[Turn("user", "describe the change"), Turn("assistant", text)])

    def question(q):
        return Sample(id=q, images=("a.png", "b.png"), task="change_vqa",
                      conversation=[Turn("user", q), Turn("assistant", "yes")])

    merged = one_per_image([caption(0, "a road", ["a road", "a new road"]), caption(1, "a new road"),
                            caption(2, "roads"), question("is there a road?"), question("is there a pool?")])
    assert [s.id for s in merged] == ["c0", "is there a road?", "is there a pool?"]
    assert merged[0].references == ["a road", "a new road", "roads"]
    assert merged[1].references == ["yes"]
