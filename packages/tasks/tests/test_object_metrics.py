"""The seed's oversights and hallucinations: by hand with a toy extractor, with the registered `sde`
reward's entities on the seed README's storage-tank example, and wired into the caption tasks."""

from __future__ import annotations

import logging

import pytest

from rsforge.core.plugins import PluginManager
from rsforge.core.sample import Sample, Turn
from rsforge.tasks.metrics import captions
from rsforge.tasks.metrics import objects as om
from rsforge.tasks.task import get_task


def words(text: str) -> set[str]:
    """A toy extractor: every word of three letters or more is an entity."""
    return {w for w in text.split() if len(w) >= 3}


def test_oversights_and_hallucinations_by_hand():
    preds = {"a": "forest and road", "b": "lake", "c": "no", "d": "tank"}
    refs = {"a": ["forest river", "forest river road"], "b": ["no"], "c": ["pond"], "d": ["tank"]}
    # a: G {forest, river, road}, C {forest, and, road}: misses 1/3, invents 1/3 ("and").
    # b: G {} (skipped for oversights), C {lake}: invents 1. c: G {pond}, C {}: misses 1. d: exact.
    assert om.object_metrics(preds, refs, words) == pytest.approx(
        {"oversights": (1 / 3 + 1 + 0) / 3, "hallucinations": (1 / 3 + 1 + 0) / 3, "n_ground_truth": 3, "n_named": 3})
    by_group = om.object_metrics_by_group(preds, refs, {"a": "x", "b": "y", "c": "y"}, words)
    assert set(by_group) == {"all", "x", "y"} and by_group["all"] == om.object_metrics(preds, refs, words)
    assert by_group["y"] == {"oversights": 1.0, "hallucinations": 1.0, "n_ground_truth": 1, "n_named": 1}
    assert om.object_metrics({"c": "no"}, refs, words) == {"oversights": 1.0, "hallucinations": 0.0,
                                                          "n_ground_truth": 1, "n_named": 0}


def test_the_seed_readme_example_with_the_registered_sde_entities():
    entities = om.registered_entities(PluginManager())
    assert entities is not None
    caption = "six white storage tanks are near a road and some green meadows"
    refs = ["there are seven white columnar tanks near a road with two tracks",
            "seven same cylinder storage tanks are placed on the grass between a forest and a road",
            "seven storage tanks stand alongside the straight road where two trucks are running",
            "seven white storage tanks in two lines are near some green trees"]
    scores = om.object_metrics({"0": caption}, {"0": refs}, entities)
    # The README: "It also fails to mention the two trucks, and mistakes a forest for meadows."
    # G = {storage tank, road, grass, forest, truck, tree}, C = {storage tank, road, meadow}.
    assert scores["oversights"] == pytest.approx(4 / 6) and scores["hallucinations"] == pytest.approx(1 / 3)


def test_without_the_rewards_plugin_the_metrics_are_skipped(caplog):
    with caplog.at_level(logging.WARNING, logger=om.__name__):
        assert om.registered_entities(PluginManager(only=["tasks"])) is None
    assert "oversights, hallucinations) skipped: no 'sde' reward is registered" in caplog.text


def _samples() -> list[Sample]:
    conversations = [("a forest and a river", True), ("two new buildings", False)]
    return [Sample(f"s{i}", ("a.png",), [Turn("user", "describe"), Turn("assistant", ref)], task="captioning",
                   changed=changed) for i, (ref, changed) in enumerate(conversations)]  # fmt: skip


def test_caption_tasks_report_them(monkeypatch):
    # The coco-caption metrics need Java; they are not what this test checks.
    monkeypatch.setattr(captions, "caption_metrics_by_group", lambda preds, refs, groups: {"all": {"CIDEr": 1.0}})
    scored = get_task("captioning", PluginManager()).score(_samples(), ["a forest", "two buildings on a road"])
    assert scored.metrics["captions/all"] == {"CIDEr": 1.0}
    assert scored.metrics["objects/changed"] == {"oversights": 0.5, "hallucinations": 0.0, "n_ground_truth": 1,
                                                 "n_named": 1}  # fmt: skip
    assert scored.metrics["objects/unchanged"]["hallucinations"] == pytest.approx(0.5)  # the road
    assert set(scored.metrics) == {"captions/all", "objects/all", "objects/changed", "objects/unchanged"}
    monkeypatch.setattr(om, "PluginManager", lambda: PluginManager(only=["tasks"]))
    skipped = get_task("captioning", PluginManager()).score(_samples(), ["a forest", "two buildings"])
    assert set(skipped.metrics) == {"captions/all"}
