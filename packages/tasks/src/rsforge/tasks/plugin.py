"""rsforge-tasks' hooks: the built-in tasks and `rsforge eval`."""

from rsforge.core.hookspecs import hookimpl

BUILTIN_TASKS = {
    "change_captioning": "free-text description of the changes between two images (coco-caption metrics)",
    "captioning": "free-text description of one image (coco-caption metrics)",
    "binary_change": "yes / no: did anything change (accuracy, precision, recall, F1)",
    "counting": "counts per class (accuracy, MAE, RMSE)",
    "grid_localization": "DeltaVLM 3x3 grid cells per changed category (cell P/R/F1, Jaccard, exact match)",
    "change_qa": "short answers about a before/after pair (accuracy per question type)",
    "change_open_qa": "free-text answers about a before/after pair (coco-caption metrics, as DeltaVLM scores "
                      "its open questions)",
    "vqa": "short answers about one image (accuracy per question type)",
    "classification": "one scene class of the candidates (accuracy, per class and question type)",
    "grounding": "one box [x1, y1, x2, y2] (accuracy at IoU 0.5, mean IoU)",
    "oriented_grounding": "8-number polygons (P/R/F1 at IoU 0.5, mean IoU)",
}


@hookimpl
def register_tasks(register):
    for name, description in BUILTIN_TASKS.items():
        register(name, factory="rsforge.tasks.builtin:builtin_task",
                 config="rsforge.core.configs:TaskConfig", description=description)


@hookimpl
def register_commands(cli):
    from rsforge.tasks.cli import add_commands

    add_commands(cli)
