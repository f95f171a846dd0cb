"""Task prompt templates, kept in one place so datasets, training, evaluation and serving ask the same
question for the same task (a model fine-tuned on one wording is evaluated with that wording).

A template may name fields filled per sample: `{candidates}` (classification: the class names,
joined by ", "), `{expression}` (grounding: the referring expression), `{question}` (QA: the
question itself). A recipe's `prompts` mapping (task -> template) overrides the built-in ones:
`prompt_for(task, overrides=recipe.prompts, ...)`, and `with_prompt_overrides` re-words a sample a
reader made, which `rsforge.datasets.loading.load_split` does for every sample of a recipe's data, so
training and evaluation ask in one wording (and serving fills its default instructions with it).

Answer formats (parsed by `rsforge.tasks`):

- `binary_change` -> "yes" / "no";
- `counting` -> a number, or counts per class ("3 new buildings and 1 new road"), digits or words;
- `grid_localization` -> DeltaVLM 3x3 grid, one `category ['cell', ...]` group per changed category
  joined by "; " (e.g. `buildings ['top-left', 'center']`), cells named as in `GRID_CELLS`, or
  "no change";
- `grounding` -> one box `[x1, y1, x2, y2]`; `oriented_grounding` -> 8-number polygons
  `[x1, y1, x2, y2, x3, y3, x4, y4]`, origin top-left of the first image. A dataset writes them in
  one of `COORDINATES` (`coordinates_text`) and records which in `meta["coordinates"]`, with the
  first image's `meta["image_size"]`, so evaluation reads answers back in the same units;
  `Sample.boxes` stay in pixels (the convention of `rsforge.core.sample`);
- `classification` -> one of the candidates; `vqa` / `change_qa` -> a short answer;
- `captioning` / `change_captioning` -> free text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from string import Formatter
from typing import Literal

from rsforge.core.sample import META_CANDIDATES, Sample, Turn
from rsforge.datasets.common import number

TASK_PROMPTS: dict[str, str] = {
    "change_captioning": "describe the changes between the two images",
    "binary_change": "has anything changed between the two images",
    "counting": "how many buildings were built",
    "grid_localization": "in which cells of a 3x3 grid are the changes",
    "change_qa": "{question}",
    "change_open_qa": "{question}",
    "captioning": "describe the image",
    "vqa": "{question}",
    "classification": "what type of scene is shown in the image? answer with one of: {candidates}",
    # No unit in the wording: a dataset chooses its `coordinates`, and the answers teach them.
    "grounding": "give the bounding box [x1, y1, x2, y2] of: {expression}",
    "oriented_grounding": "give the oriented bounding box [x1, y1, x2, y2, x3, y3, x4, y4] of: {expression}",
}

# Row-major 3x3 grid over the image, as used in grid-localization answers.
GRID_CELLS: tuple[str, ...] = (
    "top-left", "top", "top-right",
    "left", "center", "right",
    "bottom-left", "bottom", "bottom-right",
)  # fmt: skip


# Units of grounding answers: "norm1000" are integers in [0, 1000) of the first image's width and
# height, as Qwen2-VL writes boxes, so one answer fits every resolution the model sees; "pixels" are
# the image's own pixels.
Coordinates = Literal["norm1000", "pixels"]
COORDINATES: tuple[str, ...] = ("norm1000", "pixels")
META_COORDINATES = "coordinates"
META_IMAGE_SIZE = "image_size"
META_EXPRESSION = "expression"
META_QUESTION = "question"


def coordinates_text(values: Sequence[float], image_size: tuple[int, int], coordinates: Coordinates) -> str:
    """A box or polygon (pixels, x and y alternating) as answer text `[x1, y1, ...]` in `coordinates`:
    norm1000 rounds each to an integer and keeps it below 1000 (a corner on the right or bottom edge
    would otherwise read 1000, outside Qwen2-VL's range); pixels keep one decimal."""
    if coordinates == "pixels":
        return "[" + ", ".join(number(v) for v in values) + "]"
    if coordinates != "norm1000":
        raise ValueError(f"coordinates must be one of {', '.join(COORDINATES)}, got {coordinates!r}")
    width, height = image_size
    scaled = (v * 1000 / (width if k % 2 == 0 else height) for k, v in enumerate(values))
    return "[" + ", ".join(str(min(999, max(0, round(v)))) for v in scaled) + "]"


def template_fields(template: str) -> set[str]:
    """The `{field}` names a template uses."""
    return {name for _, name, _, _ in Formatter().parse(template) if name}


def template_for(task: str, overrides: Mapping[str, str] | None = None) -> str:
    """The template of `task`: the override when there is one, else the built-in one."""
    if overrides and task in overrides:
        return overrides[task]
    try:
        return TASK_PROMPTS[task]
    except KeyError:
        known = ", ".join(sorted(TASK_PROMPTS))
        raise KeyError(f"no prompt for task {task!r}; known tasks: {known}") from None


def prompt_for(
    task: str,
    *,
    overrides: Mapping[str, str] | None = None,
    candidates: Iterable[str] | None = None,
    expression: str | None = None,
    question: str | None = None,
) -> str:
    """The prompt for `task`, its template filled with the given fields.

    A KeyError lists the known tasks; a ValueError names a field the template needs but was not given.
    """
    template = template_for(task, overrides)
    values = {
        "candidates": ", ".join(candidates) if candidates is not None else None,
        "expression": expression,
        "question": question,
    }
    fields = template_fields(template)
    unknown = fields - values.keys()
    if unknown:
        raise ValueError(f"prompt for {task!r}: unknown field(s) {sorted(unknown)} in {template!r}; "
                         f"known fields: {', '.join(sorted(values))}")
    missing = sorted(f for f in fields if values[f] is None)
    if missing:
        raise ValueError(f"prompt for {task!r} needs {', '.join(missing)} (template {template!r})")
    return template.format(**{f: values[f] for f in fields})


def with_prompt_overrides(sample: Sample, overrides: Mapping[str, str] | None) -> Sample:
    """`sample` asked in the wording of `overrides` (a recipe's `prompts`), so a model is trained and
    evaluated with one prompt. Only single-question samples are re-worded, the template's fields filled
    from `Sample.meta` (and `{question}` from the sample's own question, kept in `meta["question"]` so
    that re-wording again starts from the question, not from the re-worded prompt); a sample whose
    template needs a field it lacks is kept as it is."""
    if not overrides or sample.task not in overrides or len(sample.prompt) != 1:
        return sample
    meta = sample.meta
    question = meta.get(META_QUESTION, sample.prompt[0].text)
    try:
        text = prompt_for(sample.task, overrides=overrides, candidates=meta.get(META_CANDIDATES),
                          expression=meta.get(META_EXPRESSION), question=question)
    except ValueError:
        return sample
    return replace(sample, conversation=[Turn("user", text), *sample.conversation[1:]],
                   meta={**meta, META_QUESTION: question})


def serving_prompts(overrides: Mapping[str, str] | None, num_images: int) -> dict[str, str | None]:
    """The instructions a server fills in where a client gives none, in the wording the model was trained
    on (the recipe's `prompts` over the built-in ones): `chat`, the captioning question of a model that
    reads `num_images` images (the web page's first question; None when its template needs a per-sample
    field); `mask`, what a text-guided mask head looks for (the `change_mask` override; None: the head's
    own `default_prompt`)."""
    task = "change_captioning" if num_images == 2 else "captioning"
    try:
        chat = prompt_for(task, overrides=overrides)
    except ValueError:
        chat = None
    return {"chat": chat, "mask": (overrides or {}).get("change_mask")}
