"""The `rsforge` command: a shell. The kernel's own sub-commands (`plugins`, `recipe check`) live here;
every other command comes from an installed distribution through `register_commands` (`data`, `eval`,
`detect`, `train`, `run`, `serve`). A plugin's hook only declares its arguments; the code behind a command
is imported when that command runs, so `rsforge --help` stays fast.

Every handler is `func(args) -> exit code`; `args.plugins` is the command's PluginManager.
"""

from __future__ import annotations

import argparse
import sys

from rsforge.core import __version__
from rsforge.core.errors import AssemblyError, PluginError, RecipeError, RunError
from rsforge.core.plugins import PluginManager
from rsforge.core.registry import KINDS


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


def _bytes(n: int) -> str:
    for unit, size in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def _recipe_check_command(args) -> int:
    from rsforge.core.model import RSForgeModel
    from rsforge.core.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.plugins.registry)
    model = RSForgeModel.from_recipe(recipe, args.plugins, device=args.device)
    print(f"recipe {args.recipe}: '{recipe.name}' assembles on {args.device}")
    # Weights as each part stores them (an LM's `dtype`, fp32 elsewhere): mixed precision (train.precision)
    # computes in bf16/fp16 but keeps these weights.
    print(f"  {'part':<12} {'name':<22} {'params':>10} {'trainable':>10} {'weights':>11}")
    totals = [0, 0, 0]
    for path, name, module in model.parts():
        params = list(module.parameters())
        row = [sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad),
               sum(p.numel() * p.element_size() for p in params)]
        totals = [a + b for a, b in zip(totals, row, strict=True)]
        print(f"  {path:<12} {name:<22} {_human(row[0]):>10} {_human(row[1]):>10} {_bytes(row[2]):>11}")
    print(f"  {'total':<12} {'':<22} {_human(totals[0]):>10} {_human(totals[1]):>10} {_bytes(totals[2]):>11}")
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
    except (RecipeError, AssemblyError, PluginError, RunError, FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"rsforge: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
