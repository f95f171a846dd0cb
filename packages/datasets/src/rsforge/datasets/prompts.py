"""Task prompt templates, kept in one place so datasets, training, evaluation and serving ask the same
question for the same task (a model fine-tuned on one wording is evaluated with that wording).

A template may name fields filled per sample: `{candidates}` (classification: the class names,
joined by ", "), `{expression}` (grounding: the referring expression), `{question}` (QA: the
question itself). A recipe's `prompts` mapping (task -> template) overrides the built-in ones:
`prompt_for(task, overrides=recipe.prompts, ...)`.

Answer formats (parsed by `rsforge.tasks`):

- `binary_change` -> "yes" / "no";
- `counting` -> a number, or counts per class ("3 new buildings and 1 new road"), digits or words;
- `grid_localization` -> DeltaVLM 3x3 grid, one `category ['cell', ...]` group per changed category
  joined by "; " (e.g. `buildings ['top-left', 'center']`), cells named as in `GRID_CELLS`, or
  "no change";
- `grounding` -> one box `[x1, y1, x2, y2]`; `oriented_grounding` -> 8-number polygons
  `[x1, y1, x2, y2, x3, y3, x4, y4]`. Coordinates are pixels of the first image, origin top-left
  (the convention of `rsforge.core.sample`);
- `classification` -> one of the candidates; `vqa` / `change_qa` -> a short answer;
- `captioning` / `change_captioning` -> free text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from string import Formatter

TASK_PROMPTS: dict[str, str] = {
    "change_captioning": "describe the changes between the two images",
    "binary_change": "has anything changed between the two images",
    "counting": "how many buildings were built",
    "grid_localization": "in which cells of a 3x3 grid are the changes",
    "change_qa": "{question}",
    "captioning": "describe the image",
    "vqa": "{question}",
    "classification": "what type of scene is shown in the image? answer with one of: {candidates}",
    "grounding": "give the bounding box [x1, y1, x2, y2] in pixels of: {expression}",
    "oriented_grounding": "give the oriented bounding box [x1, y1, x2, y2, x3, y3, x4, y4] in pixels of: {expression}",
}

# Row-major 3x3 grid over the image, as used in grid-localization answers.
GRID_CELLS: tuple[str, ...] = (
    "top-left", "top", "top-right",
    "left", "center", "right",
    "bottom-left", "bottom", "bottom-right",
)  # fmt: skip


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
