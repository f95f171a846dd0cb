"""The `rsforge` command. Kernel sub-commands live here; services add theirs via `register_commands`.

Every handler is `func(args) -> exit code`; `args.plugins` is the command's PluginManager.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rsforge.core import __version__
from rsforge.core.errors import AssemblyError, PluginError, RecipeError
from rsforge.core.plugins import PluginManager
from rsforge.core.registry import KINDS
from rsforge.core.tasks import task_names


def _plugins_command(args) -> int:
    plugins, registry = args.plugins, args.plugins.registry
    width = max((len(name) for kind in KINDS for name in registry.names(kind)), default=0)
    for kind in KINDS:
        names = registry.names(kind)
        if not names:
            continue
        print(f"{kind}s:")
        for name in names:
            spec = registry.parts[kind][name]
            print(f"  {name:<{width}}  {spec.distribution:<18} {spec.description}")
    for failure in plugins.failures:
        print(f"FAILED plugin '{failure.name}' ({failure.distribution}): {failure.error}", file=sys.stderr)
        if args.verbose:
            print(failure.traceback, file=sys.stderr)
    return 0


def _human(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def _recipe_check_command(args) -> int:
    from rsforge.core.assembler import assemble
    from rsforge.core.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.plugins.registry)
    model = assemble(recipe, args.plugins, device=args.device)
    rows = model.parameter_counts()
    print(f"recipe {args.recipe}: '{recipe.name}' assembles on {args.device}")
    print(f"  {'part':<12} {'name':<18} {'params':>10} {'trainable':>10}")
    for path, name, total, trainable in rows:
        print(f"  {path:<12} {name:<18} {_human(total):>10} {_human(trainable):>10}")
    total = sum(r[2] for r in rows)
    trainable = sum(r[3] for r in rows)
    print(f"  {'total':<12} {'':<18} {_human(total):>10} {_human(trainable):>10}")
    return 0


def _data_synth_command(args) -> int:
    from rsforge.core.data.synth import generate

    generate(args.out, n=args.n, seed=args.seed, size=args.size)
    print(f"wrote {args.n} synthetic pairs to {args.out}")
    return 0


def _data_check_command(args) -> int:
    from rsforge.core.data.check import check_dataset, format_report
    from rsforge.core.data.common import SPLITS

    if args.format == "synth":
        raise ValueError("check a synthetic dataset's folder with the format of the part to read "
                         "(levir_cc, changechat; scenes/: coco_captions, class_folders; objects/: rsvqa, rsvg, dota)")
    spec = args.plugins.registry.get("dataset", args.format, path="--format")
    options = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        options[key] = value
    config = spec.config(name=args.format, root=str(args.root), **options)
    report = check_dataset(spec.load_factory(), config, [args.split] if args.split else SPLITS, args.max_images)
    print(format_report(report, args.root, args.format))
    return 0 if report.usable else 1


def _eval_command(args) -> int:
    from rsforge.core.evaluate import evaluate_task, load_eval_samples, metrics_table, select_task, write_evaluation
    from rsforge.core.model import RSForgeModel

    samples = load_eval_samples(args.plugins, args.split, recipe=args.data, fmt=args.format, root=args.root)
    samples = select_task(samples, args.task, args.limit)
    model = RSForgeModel.from_pretrained(args.model, plugins=args.plugins)
    cfg = model.recipe.eval
    evaluation = evaluate_task(
        model, samples, args.task, batch_size=args.batch_size or cfg.batch_size,
        max_new_tokens=args.max_new_tokens or cfg.max_new_tokens, normalized_coords=args.normalized_coords,
    )
    out = args.out or Path("runs/eval") / Path(args.model).name / f"{args.task}-{args.split}"
    info = {"model": str(args.model), "data": args.data or f"{args.format}:{args.root}", "task": args.task,
            "split": args.split, "samples": len(samples)}
    write_evaluation(out, evaluation, info)
    print(metrics_table(evaluation.metrics), end="")
    print(f"wrote metrics.json, metrics.md and predictions.jsonl to {out}")
    return 0


def _detect_command(args) -> int:
    from rsforge.core.detect import detect
    from rsforge.core.geo import has_rasterio, mask_polygons
    from rsforge.core.model import RSForgeModel

    if args.geojson and not has_rasterio():  # checked first: never after a long run
        raise ValueError("--geojson needs rasterio to vectorise the mask: pip install 'rsforge-core[geo]'")
    model = RSForgeModel.from_pretrained(args.model, plugins=args.plugins, device=args.device)
    stats = detect(model, args.before, args.after, args.out, tile=args.tile, overlap=args.overlap,
                   batch=args.batch, threshold=args.threshold)
    print(f"wrote {args.out} ({stats.width}x{stats.height}, {stats.tiles} tiles)")
    print(stats.summary())
    if args.geojson:
        print(f"wrote {mask_polygons(args.out, args.geojson)} polygons to {args.geojson}")
    return 0


def build_parser(plugins: PluginManager) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rsforge", description="Remote-sensing vision-language models from parts that snap together."
    )
    parser.add_argument("--version", action="version", version=f"rsforge-core {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plugins", help="list installed parts and plugins that failed to load")
    p.add_argument("-v", "--verbose", action="store_true", help="print tracebacks of failed plugins")
    p.set_defaults(func=_plugins_command)

    recipe = sub.add_parser("recipe", help="work with recipes").add_subparsers(dest="recipe_command", metavar="ACTION")
    p = recipe.add_parser("check", help="validate a recipe, assemble it and print parameter counts per part")
    p.add_argument("recipe", help="path to a recipe YAML file")
    p.add_argument("--device", default="meta", help="device to assemble on (default: meta, no weights)")
    p.set_defaults(func=_recipe_check_command)

    data = sub.add_parser("data", help="datasets").add_subparsers(dest="data_command", metavar="ACTION")
    p = data.add_parser("synth", help="write a synthetic bi-temporal dataset (LEVIR-CD folders + LEVIR-CC JSON)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--n", type=int, default=600, help="number of before/after pairs (default 600)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    p.set_defaults(func=_data_synth_command)
    p = data.add_parser(
        "check", help="read a dataset with its reader; print statistics and the problems found (no training)",
        description="Read a dataset with a registered reader and print samples per split, tasks, answer "
        "lengths, references per sample, a sample of image sizes and every problem found (missing or "
        "unreadable files, empty answers). Exit code 0 when some split is usable, 1 when nothing is.",
    )  # fmt: skip
    p.add_argument("root", help="dataset folder")
    p.add_argument("--format", required=True, help="dataset reader, e.g. levir_cc, rsvqa (see `rsforge plugins`)")
    p.add_argument("--split", help="check only this split (default: train, val and test)")
    p.add_argument("--set", action="append", metavar="K=V", help="reader option, e.g. images_dir=imgs; repeatable")
    p.add_argument("--max-images", type=int, default=50, help="images decoded per split (default 50)")
    p.set_defaults(func=_data_check_command)

    p = sub.add_parser("eval", help="score a saved model on one task of a dataset split; write metrics, predictions")
    p.add_argument("--model", required=True, help="saved model directory (recipe.yaml + model.safetensors)")
    p.add_argument("--task", required=True, choices=task_names(), help="task whose samples are scored")
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
    p.add_argument("--out", help="output folder (default: runs/eval/<model>/<task>-<split>)")
    p.set_defaults(func=_eval_command)

    p = sub.add_parser(
        "detect", help="change mask of a before/after scene of any size, by overlapping tiles",
        description="Run a saved mask model over two co-registered scenes (GeoTIFF, PNG, JPEG) in overlapping "
        "tiles blended by a linear window, a strip of tiles at a time, and write a uint8 mask (0/255, or class "
        "ids for multi-class heads) by windows. GeoTIFF output keeps the before image's CRS and geotransform. "
        "Large scenes need rasterio (pip install 'rsforge-core[geo]'); without it images are read whole.",
    )  # fmt: skip
    p.add_argument("--model", required=True, help="saved model directory with a mask head")
    p.add_argument("--before", required=True, help="first-date image")
    p.add_argument("--after", required=True, help="second-date image (same size, CRS and geotransform)")
    p.add_argument("--out", required=True, help="output mask (.tif: GeoTIFF; .png)")
    p.add_argument("--tile", type=int, help="tile side in pixels (default: the model's image size; "
                   "other sizes are resized to it)")
    p.add_argument("--overlap", type=int, help="pixels shared by neighbouring tiles (default: 32, at most a quarter "
                   "of the tile)")
    p.add_argument("--batch", type=int, default=8, help="tiles per forward pass (default 8)")
    p.add_argument("--threshold", type=float, default=0.5, help="change probability threshold (default 0.5)")
    p.add_argument("--geojson", help="also write the changed regions as polygons (needs rasterio)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.set_defaults(func=_detect_command)

    plugins.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    plugins = PluginManager()
    try:
        parser = build_parser(plugins)
        args = parser.parse_args(argv)
        if not hasattr(args, "func"):
            parser.print_help()
            return 0
        args.plugins = plugins
        return int(args.func(args) or 0)
    except (RecipeError, AssemblyError, PluginError, FileNotFoundError, ValueError) as exc:
        print(f"rsforge: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
