"""Task prompt texts, kept in one place so datasets, training, evaluation and serving ask the same
question for the same task (a model fine-tuned on one wording is evaluated with that wording).

Answer formats (parsed by the metrics): `binary_change` -> "yes" / "no"; `counting` -> a number
in digits; `grid_localization` -> DeltaVLM 3x3 grid, one `category ['cell', ...]` group per changed
category joined by "; " (e.g. `buildings ['top-left', 'center']`), cells named as in `GRID_CELLS`.
"""

from __future__ import annotations

TASK_PROMPTS: dict[str, str] = {
    "change_captioning": "describe the changes between the two images",
    "binary_change": "has anything changed between the two images",
    "counting": "how many buildings were built",
    "grid_localization": "in which cells of a 3x3 grid are the changes",
    "captioning": "describe the image",
    "scene_classification": "what type of scene is shown in the image",
}

# Row-major 3x3 grid over the image, as used in grid-localization answers.
GRID_CELLS: tuple[str, ...] = (
    "top-left", "top", "top-right",
    "left", "center", "right",
    "bottom-left", "bottom", "bottom-right",
)  # fmt: skip


def prompt_for(task: str) -> str:
    """The canonical prompt for `task`; a KeyError lists the known tasks."""
    try:
        return TASK_PROMPTS[task]
    except KeyError:
        known = ", ".join(sorted(TASK_PROMPTS))
        raise KeyError(f"no prompt for task {task!r}; known tasks: {known}") from None
