"""`rsforge eval` in-process on a tiny untrained model over synthetic data: output files, the printed
table, and malformed answers counted rather than raised."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import rsforge.core.cli as cli
from rsforge.core.config import DatasetConfig
from rsforge.core.data.schema import Sample, Turn
from rsforge.core.data.synth import generate
from rsforge.core.hookspecs import hookimpl
from rsforge.core.plugins import PluginManager


class SynthChatConfig(DatasetConfig):
    name: str = "test_synth_chat"
    root: str


def load_synth_chat(config: SynthChatConfig, split: str) -> list[Sample]:
    """The synthetic generator's ChangeChat `conversations.json`: one single-question sample per entry."""
    root = Path(config.root)
    samples = []
    for entry in json.loads((root / "conversations.json").read_text()):
        if entry["task"] == "multi_turn" or not entry["image"][0].startswith(f"{split}/"):
            continue
        turns = [Turn("user" if t["from"] == "human" else "assistant", t["value"].removeprefix("<image>\n"))
                 for t in entry["conversations"]]  # fmt: skip
        name = Path(entry["image"][0]).name
        samples.append(Sample(entry["id"], tuple(str(root / i) for i in entry["image"]), turns, task=entry["task"],
                              mask=str(root / split / "label" / name)))  # fmt: skip
    return samples


class SynthChatPlugin:
    @hookimpl
    def register_datasets(self, register):
        register("test_synth_chat", factory=f"{__name__}:load_synth_chat", config=SynthChatConfig)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("data") / "synth", n=12, seed=0, size=32, progress=False)


@pytest.fixture
def with_chat_reader(monkeypatch):
    def manager() -> PluginManager:
        pm = PluginManager()
        pm.register(SynthChatPlugin(), name="test-synth-chat", distribution="tests")
        return pm

    monkeypatch.setattr(cli, "PluginManager", manager)


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(("task", "metric"), [("binary_change", "accuracy"), ("counting", "mae"),
                                              ("grid_localization", "jaccard")])
def test_eval_answer_tasks(task, metric, tiny_model_dir, synth_root, with_chat_reader, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, stderr = _run(["eval", "--model", str(tiny_model_dir), "--format", "test_synth_chat", "--root",
                                 str(synth_root), "--task", task, "--split", "train", "--limit", "5",
                                 "--batch-size", "2", "--max-new-tokens", "6", "--out", str(out)], capsys)  # fmt: skip
    assert code == 0, stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == task and metrics["split"] == "train" and metrics["samples"] == 5
    scores = metrics["metrics"][task]
    assert scores["n"] == 5 and 0 <= scores[metric]
    assert 0 <= metrics["metrics"]["mask"]["f1"] <= 1  # the model has a mask head and the samples masks
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
