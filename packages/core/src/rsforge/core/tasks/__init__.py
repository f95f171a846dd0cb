"""Tasks: answer parsers (`parsers`) and, per task, its reference, parser and metric (`registry`).

The ten task names: change_captioning, binary_change, counting, grid_localization, change_qa,
captioning, vqa, classification, grounding, oriented_grounding. Prompt templates live in
`rsforge.core.prompts`. Nothing here imports torch.
"""

from rsforge.core.tasks.registry import (
    CAPTION_TASKS,
    TASKS,
    CaptionTask,
    Scored,
    Task,
    get_task,
    task_names,
    with_prompt_overrides,
)

__all__ = ["CAPTION_TASKS", "TASKS", "CaptionTask", "Scored", "Task", "get_task", "task_names",
           "with_prompt_overrides"]
