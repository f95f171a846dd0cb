"""Prompt templates and the task registry: references, parsing and scoring of every task on fixed answers."""

from __future__ import annotations

import pytest

from rsforge.core.errors import RecipeError
from rsforge.core.plugins import PluginManager
from rsforge.core.sample import Sample, Turn
from rsforge.datasets.prompts import TASK_PROMPTS, prompt_for
from rsforge.tasks.task import get_task, task_names, with_prompt_overrides

PLUGINS = PluginManager()  # the installed tasks, as `rsforge eval` finds them

TASKS_OF_ISSUE = ["change_captioning", "binary_change", "counting", "grid_localization", "change_qa", "captioning",
                  "vqa", "classification", "grounding", "oriented_grounding", "change_open_qa"]  # fmt: skip


def _sample(i: int, task: str, question: str, answer: str | None, **kw) -> Sample:
    conversation = [Turn("user", question)] + ([Turn("assistant", answer)] if answer is not None else [])
    return Sample(f"s{i}", ("a.png", "b.png"), conversation, task=task, **kw)


def test_every_task_has_a_prompt_and_a_scorer():
    assert sorted(TASK_PROMPTS) == sorted(TASKS_OF_ISSUE) == task_names(PLUGINS)
    for task in TASKS_OF_ISSUE:
        get_task(task, PLUGINS)
    with pytest.raises(RecipeError, match=r"unknown task .segmentation.; known tasks: binary_change"):
        get_task("segmentation", PLUGINS)


def test_prompts_fill_fields_and_take_overrides():
    assert prompt_for("binary_change") == "has anything changed between the two images"  # synth's wording
    assert prompt_for("classification", candidates=["forest", "river"]).endswith("one of: forest, river")
    assert prompt_for("grounding", expression="the red roof").endswith("of: the red roof")
    assert prompt_for("vqa", question="is there a road?") == "is there a road?"
    overrides = {"counting": "count the new houses", "vqa": "answer briefly: {question}"}
    assert prompt_for("counting", overrides=overrides) == "count the new houses"
    assert prompt_for("vqa", overrides=overrides, question="how many?") == "answer briefly: how many?"
    assert prompt_for("my_task", overrides={"my_task": "do it"}) == "do it"


def test_prompt_errors_name_what_is_missing():
    with pytest.raises(ValueError, match="'classification' needs candidates"):
        prompt_for("classification")
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['colour'\]"):
        prompt_for("vqa", overrides={"vqa": "{colour}"})
    with pytest.raises(KeyError, match="no prompt for task 'nope'; known tasks: binary_change"):
        prompt_for("nope")


def test_prompt_overrides_reword_single_question_samples():
    s = _sample(0, "grounding", "where is it", "[0, 0, 1, 1]", meta={"expression": "the pond"})
    asked = with_prompt_overrides(s, {"grounding": "find {expression}"})
    assert asked.prompt == [Turn("user", "find the pond")] and asked.answer == "[0, 0, 1, 1]"
    assert with_prompt_overrides(s, {"vqa": "x"}) is s  # no override for the task
    plain = _sample(1, "grounding", "where is it", "[0, 0, 1, 1]")
    assert with_prompt_overrides(plain, {"grounding": "find {expression}"}) is plain  # no expression: unchanged


def _score(task: str, cases: list[tuple[str, str]], **kw):
    samples = [_sample(i, task, "q", ref, **kw) for i, (ref, _) in enumerate(cases)]
    return get_task(task, PLUGINS).score(samples, [pred for _, pred in cases])


def test_binary_change_task():
    scored = _score("binary_change", [("yes", "Yes."), ("no", "yes"), ("no", "perhaps")])
    assert scored.parsed == [True, True, None] and scored.correct == [True, False, False]
    assert scored.metrics["binary_change"]["accuracy"] == pytest.approx(1 / 3)
    assert scored.metrics["binary_change"]["malformed"] == 1


def test_counting_task():
    scored = _score("counting", [("2", "two"), ("3 new buildings and 1 new road", "3 new buildings and 1 road"),
                                 ("0", "")])  # fmt: skip
    assert scored.correct == [True, True, False]
    assert scored.parsed[1] == {"total": 4, "per_class": {"building": 3, "road": 1}} and scored.parsed[2] is None
    assert scored.metrics["counting"]["mae"] == 0.0 and scored.metrics["counting"]["malformed"] == 1


def test_grid_task():
    ref = "buildings ['top-left', 'center']; roads ['left']"
    scored = _score("grid_localization", [(ref, "roads ['left']; buildings ['center', 'top-left']"),
                                          ("no change", "buildings [top-left"), ("no change", "no change")])
    assert scored.correct == [True, False, True]
    assert scored.parsed[0] == {"roads": ["left"], "buildings": ["top-left", "center"]}
    assert scored.metrics["grid_localization"]["exact_match"] == pytest.approx(2 / 3)


def test_classification_task_with_candidates_and_question_types():
    meta = {"candidates": ["forest", "river", "dense residential"], "question_type": "scene"}
    scored = _score("classification", [("forest", "a forest"), ("river", "Dense residential."), ("river", "desert")],
                    meta=meta)  # fmt: skip
    assert scored.parsed == ["forest", "dense residential", None] and scored.correct == [True, False, False]
    m = scored.metrics
    assert m["classification"] == {"accuracy": pytest.approx(1 / 3), "accuracy/scene": pytest.approx(1 / 3), "n": 3,
                                   "malformed": 1}  # fmt: skip
    assert m["classification/classes"] == {"forest": 1.0, "river": 0.0}


def test_vqa_task_matches_any_reference():
    samples = [_sample(0, "vqa", "how many roads", "2", references=["2", "two roads"], meta={"question_type": "count"}),
               _sample(1, "vqa", "is it urban", "yes", meta={"question_type": "presence"}),
               _sample(2, "vqa", "what is it", "a lake")]  # fmt: skip
    scored = get_task("vqa", PLUGINS).score(samples, ["Two roads.", "no", ""])
    assert scored.correct == [True, False, False] and scored.parsed == ["2 roads", "no", None]
    assert scored.metrics["vqa"] == {"accuracy": pytest.approx(1 / 3), "accuracy/count": 1.0,
                                     "accuracy/presence": 0.0, "n": 3, "malformed": 1}  # fmt: skip


def test_grounding_task_reads_boxes_or_the_answer():
    samples = [_sample(0, "grounding", "q", "[0, 0, 10, 10]"),
               _sample(1, "grounding", "q", None, boxes=[[0, 0, 10, 10]]),
               _sample(2, "grounding", "q", "[0, 0, 10, 10]")]  # fmt: skip
    scored = get_task("grounding", PLUGINS).score(samples, ["[0, 0, 10, 5]", "[5, 5, 15, 15]", "somewhere"])
    assert scored.correct == [True, False, False] and scored.parsed[0] == [0, 0, 10, 5]
    assert scored.metrics["grounding"]["acc@0.5"] == pytest.approx(1 / 3)
    assert scored.metrics["grounding"]["mean_iou"] == pytest.approx((0.5 + 25 / 175) / 3)


def test_oriented_grounding_task():
    samples = [_sample(0, "oriented_grounding", "q", None, boxes=[[0, 0, 2, 0, 2, 2, 0, 2]]),
               _sample(1, "oriented_grounding", "q", "[0, 0, 2, 0, 2, 2, 0, 2]")]  # fmt: skip
    scored = get_task("oriented_grounding", PLUGINS).score(samples, ["[2, 2, 0, 2, 0, 0, 2, 0]", "[0, 0, 2]"])
    assert scored.correct == [True, False] and scored.parsed[0] == [[2, 2, 0, 2, 0, 0, 2, 0]]
    m = scored.metrics["oriented_grounding"]
    assert m["precision"] == 1.0 and m["recall"] == 0.5 and m["malformed"] == 1


def test_a_bad_reference_is_a_data_error_naming_the_sample():
    with pytest.raises(ValueError, match=r"sample s0 \(counting\): reference 'several' is not a count"):
        _score("counting", [("several", "2")])
    with pytest.raises(ValueError, match=r"sample s0 .*no reference answer"):
        get_task("vqa", PLUGINS).score([_sample(0, "vqa", "q", None)], ["x"])
