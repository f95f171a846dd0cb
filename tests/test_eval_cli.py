"""`rsforge eval` in-process on tiny untrained models over synthetic data, read through each public
format's reader (the generator writes every layout): output files, the printed table, and malformed
answers counted rather than raised."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import rsforge.core.cli as cli
from rsforge.datasets.synth import generate


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("data") / "synth", n=12, seed=0, size=32, progress=False)


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(("task", "metric"), [("binary_change", "accuracy"), ("counting", "mae"),
                                              ("grid_localization", "jaccard"), ("change_qa", "accuracy")])
def test_eval_answer_tasks(task, metric, tiny_model_dir, synth_root, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, stderr = _run(["eval", "--model", str(tiny_model_dir), "--format", "changechat", "--root",
                                 str(synth_root), "--task", task, "--split", "train", "--limit", "5",
                                 "--batch-size", "2", "--max-new-tokens", "6", "--out", str(out)], capsys)  # fmt: skip
    assert code == 0, stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == task and metrics["split"] == "train" and metrics["samples"] == 5
    scores = metrics["metrics"][task]
    assert scores["n"] == 5 and 0 <= scores[metric]
    assert "mask" not in metrics["metrics"]  # ChangeChat carries no masks (the LEVIR-CC test scores them)
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 5
    assert set(rows[0]) >= {"id", "prompt", "prediction", "references", "parsed", "correct"}
    # an untrained model answers anything: what does not parse is counted and scored wrong, nothing raises
    unparsed = [r for r in rows if r["parsed"] is None]
    assert scores["malformed"] == len(unparsed)
    assert all(r["correct"] is False for r in unparsed)
    table = (out / "metrics.md").read_text()
    assert table.startswith("| group | metric | value |") and f"| {task} | malformed |" in table
    assert table in stdout


def test_eval_change_captioning_from_a_recipe(tiny_model_dir, synth_root, tmp_path, capsys):
    recipe = tmp_path / "data.yaml"
    recipe.write_text(f"encoder: {{name: timm}}\ndata: {{name: levir_cc, root: {synth_root}}}\n")
    out = tmp_path / "out"
    code, stdout, stderr = _run(["eval", "--model", str(tiny_model_dir), "--data", str(recipe), "--task",
                                 "change_captioning", "--out", str(out)], capsys)  # fmt: skip
    assert code == 0, stderr
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert {"captions/all", "captions/changed", "captions/unchanged", "mask"} <= set(metrics)
    assert "CIDEr" in metrics["captions/all"] and "| captions/all | CIDEr |" in stdout
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["correct"] is None and len(r["references"]) >= 3 for r in rows)


def test_eval_reports_a_task_the_data_does_not_have(tiny_model_dir, synth_root, tmp_path, capsys):
    code, _, stderr = _run(["eval", "--model", str(tiny_model_dir), "--format", "levir_cc", "--root",
                            str(synth_root), "--task", "counting", "--out", str(tmp_path)], capsys)  # fmt: skip
    assert code == 2
    assert "no counting samples in the data; found: change_captioning (2)" in stderr


def test_eval_needs_a_root_with_format(tiny_model_dir, capsys):
    code, _, stderr = _run(["eval", "--model", str(tiny_model_dir), "--format", "levir_cc", "--task", "vqa"], capsys)
    assert code == 2 and "--format levir_cc needs --root" in stderr


@pytest.mark.parametrize(("fmt", "subdir", "task"), [
    ("coco_captions", "scenes", "captioning"),
    ("class_folders", "scenes", "classification"),
    ("rsvqa", "objects", "vqa"),
    ("rsvg", "objects", "grounding"),
    ("dota", "objects", "oriented_grounding"),
])
def test_eval_single_image_tasks_through_each_reader(fmt, subdir, task, tiny_single_image_model_dir, synth_root,
                                                     tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, stderr = _run(["eval", "--model", str(tiny_single_image_model_dir), "--format", fmt, "--root",
                                 str(synth_root / subdir), "--task", task, "--split", "test", "--limit", "4",
                                 "--max-new-tokens", "6", "--out", str(out)], capsys)  # fmt: skip
    assert code == 0, stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == task and metrics["samples"] > 0
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == metrics["samples"]
    if task == "captioning":
        assert "CIDEr" in metrics["metrics"]["captions/all"]
    else:
        scores = metrics["metrics"][task]
        assert scores["n"] == len(rows) and scores["malformed"] == sum(r["parsed"] is None for r in rows)
    assert (out / "metrics.md").read_text() in stdout
