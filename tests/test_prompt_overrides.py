"""One prompt path: a recipe's `prompts` override words the training samples, the evaluation questions and
the server's default instructions identically (the readers themselves write the built-in wording)."""

from __future__ import annotations

import pytest
import torch
import yaml

from rsforge.core.model import RSForgeModel
from rsforge.core.recipe import parse_recipe
from rsforge.core.sample import Sample, Turn
from rsforge.datasets.loading import load_split, training_texts
from rsforge.datasets.prompts import prompt_for, with_prompt_overrides
from rsforge.datasets.torch_dataset import SampleDataset, collate
from rsforge.tasks.evaluate import evaluate_task

from .conftest import ROOT

OVERRIDES = {"change_captioning": "what is different between these two scenes",
             "classification": "name the scene, one of: {candidates}",
             "change_mask": "show the new buildings"}


@pytest.fixture(scope="module")
def recipe(plugins, tmp_path_factory):
    """tiny.yaml with the overrides, reading synthetic change captions (with masks) and scene classes."""
    root = str(tmp_path_factory.mktemp("synth"))
    raw = yaml.safe_load((ROOT / "recipes" / "tiny.yaml").read_text())
    raw["data"] = [{"name": "synth", "n": 12, "size": 32, "root": root},
                   {"name": "synth", "n": 12, "size": 32, "root": root, "format": "class_folders"}]
    raw["prompts"] = OVERRIDES
    return parse_recipe(raw, plugins.registry)


def test_training_samples_are_asked_in_the_recipe_wording(recipe, plugins):
    train = load_split(recipe, plugins, "train")
    tasks = {s.task for s in train}
    assert tasks == {"change_captioning", "classification"}
    for sample in train:
        expected = prompt_for(sample.task, overrides=OVERRIDES, candidates=sample.meta.get("candidates"))
        assert sample.conversation[0] == Turn("user", expected), sample.id
    # What the decoder learns to read, and what a text-guided mask head is steered by in training.
    assert OVERRIDES["change_captioning"] in training_texts(train)
    pairs = [s for s in train if s.task == "change_captioning" and s.mask][:2]
    batch = collate([SampleDataset(pairs, 32)[i] for i in range(len(pairs))])
    assert batch.instructions == [OVERRIDES["change_captioning"]] * len(pairs)


def test_evaluation_and_serving_ask_as_training_did(recipe, plugins, tmp_path, monkeypatch):
    from rsforge.serve import replica as replica_module
    from rsforge.serve.masks import DetectRequest

    train = load_split(recipe, plugins, "train")
    prepared = recipe.prepared(training_texts(train), train)
    torch.manual_seed(0)
    model = RSForgeModel.from_recipe(prepared, plugins)
    asked_in_training = {s.conversation[0].text for s in train if s.task == "change_captioning"}

    # Evaluation: samples loaded through the recipe, and samples as a reader wrote them (`rsforge eval
    # --format`), are asked the same question as training asked.
    loaded = load_split(recipe, plugins, "test")
    raw = [s for s in loaded if s.task == "change_captioning"][:2]
    builtin = [Sample(s.id, s.images, [Turn("user", prompt_for("change_captioning")), *s.conversation[1:]],
                      task=s.task, references=s.references) for s in raw]
    for samples in (raw, builtin):
        rows = evaluate_task(model, samples, "change_captioning", max_new_tokens=2, progress=False).predictions
        assert {row["prompt"] for row in rows} == asked_in_training

    # Serving: the web page's first question and the detect endpoint's default instruction.
    deployment = replica_module.ModelDeployment.func_or_class(str(model.save_pretrained(tmp_path / "m")), "m", 8, 0.0)
    assert deployment.info()["prompts"] == {"chat": OVERRIDES["change_captioning"], "mask": OVERRIDES["change_mask"]}
    seen = {}
    monkeypatch.setattr(replica_module, "detect_scene", lambda *a, prompt, **k: seen.setdefault("prompt", prompt))
    deployment._detect_scene(DetectRequest("m", b"", b"", "png", 0.5, None))
    assert seen["prompt"] == OVERRIDES["change_mask"]


def test_rewording_twice_asks_the_question_once():
    sample = Sample("q1", ("a.png",), [Turn("user", "is there a road"), Turn("assistant", "yes")], task="vqa")
    overrides = {"vqa": "answer briefly: {question}"}
    once = with_prompt_overrides(sample, overrides)
    assert once.prompt[0].text == "answer briefly: is there a road"
    assert with_prompt_overrides(once, overrides).prompt == once.prompt
    assert with_prompt_overrides(sample, None) is sample and sample.meta == {}  # the reader's sample is untouched
