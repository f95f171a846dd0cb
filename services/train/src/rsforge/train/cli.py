"""`rsforge train` and `rsforge run`: the one way to train a recipe, locally or on a Ray cluster."""

from __future__ import annotations

import time
from pathlib import Path


def _add_common(parser) -> None:
    parser.add_argument("recipe", nargs="?", help="recipe YAML file (not with --resume: the run keeps its own)")
    parser.add_argument("--out", help="run directory (default: runs/<recipe name>-<time>)")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue a stopped run from its latest checkpoint (model, optimizer, schedule, "
                             "RNG and data position)")
    parser.add_argument("--address", help="Ray cluster address (default: start a local Ray instance)")
    parser.add_argument("--workers", type=int, help="number of Ray Train workers (overrides train.ray_workers)")
    parser.add_argument("--gpu", action="store_true", help="one GPU per worker (overrides train.use_gpu)")
    parser.add_argument("--cpus-per-worker", type=int, help="CPUs reserved per worker (overrides "
                        "train.cpus_per_worker)")


def add_commands(cli) -> None:
    p = cli.add_parser(
        "train", help="train a recipe with Ray Train, save it and evaluate it on the val split",
        description="Train RECIPE with Ray Train (local Ray by default, --address for a cluster).",
    )
    _add_common(p)
    p.set_defaults(func=execute, baseline=False, split="val")
    p = cli.add_parser(
        "run", help="synthesize/read data, train, evaluate on the test split against a baseline, write a report",
        description="Run RECIPE end to end: data, Ray Train, evaluation against the trivial baseline, report.",
    )
    _add_common(p)
    p.set_defaults(func=execute, baseline=True, split=None)


def _recipe_and_run_dir(args):
    """The recipe, run directory and command settings, with everything a user can get wrong checked before
    any data is read or Ray starts: the run directory, the recipe, and that every part builds."""
    import json

    from rsforge.core.model import RSForgeModel
    from rsforge.core.recipe import load_recipe
    from rsforge.train.ray_job import COMMAND_FILE, RECIPE_FILE, check_run_dir

    if args.resume:
        if args.recipe or args.out:
            raise SystemExit("--resume RUN_DIR continues that run with its own recipe: give no RECIPE or --out")
        run_dir = Path(args.resume)
        check_run_dir(run_dir, resume=True)
        recipe = load_recipe(run_dir / RECIPE_FILE, args.plugins.registry)
        started = json.loads((run_dir / COMMAND_FILE).read_text()) if (run_dir / COMMAND_FILE).is_file() else {}
        if started and (started["split"], started["baseline"]) != (args.split or recipe.eval.split, args.baseline):
            print(f"{run_dir} was started by `rsforge {'run' if started['baseline'] else 'train'}`: it finishes "
                  f"the same way (evaluation on the {started['split']} split"
                  + (", against the baseline)" if started["baseline"] else ")"))
            args.split, args.baseline = started["split"], started["baseline"]
    elif args.recipe:
        recipe = load_recipe(args.recipe, args.plugins.registry)
        run_dir = Path(args.out or f"runs/{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}")
        check_run_dir(run_dir, resume=False)
    else:
        raise SystemExit("give a RECIPE to train, or --resume RUN_DIR")
    overrides = {}
    if args.workers:
        overrides["ray_workers"] = args.workers
    if args.gpu:
        overrides["use_gpu"] = True
    if args.cpus_per_worker:
        overrides["cpus_per_worker"] = args.cpus_per_worker
    if overrides:
        recipe = recipe.model_copy(update={"train": recipe.train.model_copy(update=overrides)})
    RSForgeModel.from_recipe(recipe, args.plugins, device="meta")
    return recipe, run_dir


def execute(args) -> int:
    from rsforge.train.pipeline import run_recipe
    from rsforge.train.report import format_table, headline_table

    recipe, run_dir = _recipe_and_run_dir(args)
    started = time.perf_counter()
    outcome = run_recipe(recipe, run_dir, plugins=args.plugins, split=args.split, baseline=args.baseline,
                         address=args.address, resume=bool(args.resume))
    total = time.perf_counter() - started
    print()
    if outcome.baselines:
        print(headline_table(outcome.metrics, outcome.baselines))
    else:
        print(format_table(outcome.metrics, None))
    print(f"\nmodel:  {outcome.model_dir}\nreport: {outcome.report_dir}\ntime:   {total:.0f} s "
          + "(" + ", ".join(f"{k} {v:.0f} s" for k, v in outcome.seconds.items()) + ")")
    return 0

