"""`rsforge eval`: score a saved model on one task of a dataset split."""

from __future__ import annotations

from pathlib import Path

MASK_TASK = "change_mask"


def _eval_command(args) -> int:
    from rsforge.core.model import RSForgeModel
    from rsforge.tasks.evaluate import (
        evaluate_mask_task,
        evaluate_task,
        load_eval_samples,
        metrics_table,
        select_task,
        write_evaluation,
    )
    from rsforge.tasks.mask_eval import mask_baselines, mask_samples

    samples = load_eval_samples(args.plugins, args.split, recipe=args.data, fmt=args.format, root=args.root)
    model = RSForgeModel.from_pretrained(args.model, plugins=args.plugins)
    cfg = model.recipe.eval
    if args.resolution:
        cfg.mask_resolution = args.resolution
    if args.task == MASK_TASK:  # every pair with a mask, whatever its text task
        samples = mask_samples(samples)[: args.limit]
        evaluation = evaluate_mask_task(model, samples, batch_size=args.batch_size or cfg.batch_size)
        baselines = mask_baselines(samples, resolution=cfg.mask_resolution, image_size=model.image_size)
        evaluation.metrics.update({f"{group} ({name})": metrics for name, groups in baselines.items()
                                   for group, metrics in groups.items()})
    else:
        samples = select_task(samples, args.task, args.limit)
        evaluation = evaluate_task(
            model, samples, args.task, batch_size=args.batch_size or cfg.batch_size,
            max_new_tokens=args.max_new_tokens or cfg.max_new_tokens, normalized_coords=args.normalized_coords,
            plugins=args.plugins,
        )
    out = args.out or Path("runs/eval") / Path(args.model).name / f"{args.task}-{args.split}"
    info = {"model": str(args.model), "data": args.data or f"{args.format}:{args.root}", "task": args.task,
            "split": args.split, "samples": len(samples)}
    write_evaluation(out, evaluation, info)
    print(metrics_table(evaluation.metrics), end="")
    print(f"wrote metrics.json, metrics.md and predictions.jsonl to {out}")
    return 0


def add_commands(cli) -> None:
    p = cli.add_parser("eval", help="score a saved model on one task of a dataset split; write metrics, predictions")
    p.add_argument("--model", required=True, help="saved model directory (recipe.yaml + model.safetensors)")
    p.add_argument("--task", required=True, help=f"task whose samples are scored (see `rsforge plugins`), or "
                   f"{MASK_TASK}: the model's change masks on every pair with a mask, beside the all-zero and "
                   "all-changed masks")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="recipe YAML whose data section names the datasets")
    source.add_argument("--format", help="registered dataset reader (see `rsforge plugins`), with --root")
    p.add_argument("--root", help="dataset folder for --format")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--batch-size", type=int, help="samples per batch (default: the model recipe's eval.batch_size)")
    p.add_argument("--max-new-tokens", type=int, help="answer length limit (default: the recipe's eval setting)")
    p.add_argument("--limit", type=int, help="evaluate only the first N samples of the task")
    p.add_argument("--normalized-coords", action="store_true",
                   help="the model answers boxes in 0-1000 normalised coordinates (default: pixels)")
    p.add_argument("--resolution", choices=["native", "model"],
                   help="where change masks are scored (default: the recipe's eval.mask_resolution, native)")
    p.add_argument("--out", help="output folder (default: runs/eval/<model>/<task>-<split>)")
    p.set_defaults(func=_eval_command)

