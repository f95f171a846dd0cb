"""The README's demo numbers, pasted from a `make demo` run rather than typed.

    python scripts/demo_table.py runs/demo     # record runs/demo's report in docs/demo-results.json
                                               # and rewrite the README's demo block from it
    python scripts/demo_table.py --check       # the README's block is what docs/demo-results.json says

`docs/demo-results.json` keeps the headline metrics of the model and the baselines, the run's timings,
and what they were measured with (processor, core count, library versions): the numbers reproduce
exactly only with the same worker count, machine and versions (`constraints.txt` pins the versions).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

from rsforge.core.atomic import atomic_write_text
from rsforge.train.report import headline_table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "demo-results.json"
README = ROOT / "README.md"
BEGIN = "<!-- demo-table: written by `python scripts/demo_table.py runs/demo`; do not edit by hand -->"
END = "<!-- /demo-table -->"
LIBRARIES = ("torch", "torchvision", "transformers", "timm", "ray", "numpy", "pillow", "pycocoevalcap")


def processor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def record(run_dir: Path) -> dict:
    report = json.loads((run_dir / "report" / "metrics.json").read_text())
    return {
        "recipe": report["recipe"], "split": report["split"], "model": report["model"],
        "baselines": report["baselines"], "seconds": report["seconds"],
        "machine": {"processor": processor(), "cores": os.cpu_count(), "python": platform.python_version()},
        "versions": {name: metadata.version(name) for name in LIBRARIES},
    }


def block(results: dict) -> str:
    seconds = results["seconds"]
    machine, versions = results["machine"], results["versions"]
    took = ", ".join(f"{name} {value:.0f} s" for name, value in seconds.items())
    return "\n".join([
        BEGIN,
        f"On {machine['cores']} CPU cores ({machine['processor']}), `rsforge run` took "
        f"{sum(seconds.values()):.0f} s ({took}) and ended like this:",
        "",
        "```",
        headline_table(results["model"], results["baselines"]),
        "```",
        "",
        "Measured with " + ", ".join(f"{name} {version}" for name, version in versions.items()) + ".",
        END,
    ])


def readme_block(text: str) -> str:
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{README}: no demo block ({BEGIN} ... {END})")
    return text[text.index(BEGIN): text.index(END) + len(END)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", type=Path, help="a finished `rsforge run` folder (runs/demo)")
    parser.add_argument("--check", action="store_true", help="only check that the README matches the record")
    args = parser.parse_args(argv)
    text = README.read_text()
    if args.check:
        expected = block(json.loads(RESULTS.read_text()))
        if readme_block(text) != expected:
            print(f"{README}: the demo block differs from {RESULTS}; run scripts/demo_table.py RUN_DIR",
                  file=sys.stderr)
            return 1
        return 0
    if args.run_dir is None:
        parser.error("give RUN_DIR, or --check")
    results = record(args.run_dir)
    atomic_write_text(RESULTS, json.dumps(results, indent=2) + "\n")
    atomic_write_text(README, text.replace(readme_block(text), block(results)))
    print(f"wrote {RESULTS.relative_to(ROOT)} and the demo block of README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
