"""The README's benchmark table, rendered from `bench/results/latest.md` rather than typed.

    python bench/readme_table.py            # rewrite the block between the bench-table markers in README.md
    python bench/readme_table.py --check    # exit 1 if the README's block is not what latest.md renders to

Every ratio of latest.md with its spread over the pairs (IQR, min-max, pair count), goal and verdict;
a column an older latest.md lacks shows '-'. `make bench` runs it after `run_all.py`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rsforge.core.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
LATEST = ROOT / "bench" / "results" / "latest.md"
README = ROOT / "README.md"
BEGIN = ("<!-- bench-table: written by `python bench/readme_table.py` from bench/results/latest.md; "
         "do not edit by hand -->")
END = "<!-- /bench-table -->"
COLUMNS = ("benchmark", "case", "ratio", "median", "IQR", "min-max", "pairs", "goal", "verdict")
RENAMED = {"value": "median"}  # latest.md before the spreads had one `value` per ratio


def parse(text: str) -> dict:
    """latest.md's run line (date, commit, machine), its table rows as {column: cell} and its total line."""
    lines = text.splitlines()
    header = next((i for i, line in enumerate(lines) if line.startswith("| benchmark |")), None)
    if header is None:
        raise ValueError("latest.md has no table (no '| benchmark |' header)")
    names = [RENAMED.get(cell.strip(), cell.strip()) for cell in lines[header].strip("|").split("|")]
    rows = []
    for line in lines[header + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(names, (cell.strip() for cell in line.strip("|").split("|")), strict=True)))
    run = next(line for line in lines[1:header] if line.strip() and not line.startswith("Each ratio"))
    total = next((line for line in lines[header:] if line.startswith("Total ")), "")
    return {"title": lines[0].removeprefix("# "), "run": run, "rows": rows, "total": total}


def render(latest: dict) -> str:
    table = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    table += ["| " + " | ".join(row.get(column, "-") for column in COLUMNS) + " |" for row in latest["rows"]]
    return "\n".join([
        BEGIN,
        f"{latest['title']} (`bench/results/latest.md`): {latest['run']} {latest['total']}".rstrip(),
        "",
        *table,
        END,
    ])


def readme_block(text: str) -> str:
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{README}: no benchmark block ({BEGIN} ... {END})")
    return text[text.index(BEGIN): text.index(END) + len(END)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the README's block matches")
    parser.add_argument("--latest", type=Path, default=LATEST, help="the run's table (default bench/results/latest.md)")
    parser.add_argument("--readme", type=Path, default=README, help="the file holding the block (default README.md)")
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    current, wanted = readme_block(text), render(parse(args.latest.read_text()))
    if args.check:
        if current != wanted:
            print(f"{args.readme}'s benchmark table differs from {args.latest}; run python bench/readme_table.py",
                  file=sys.stderr)
            return 1
        return 0
    if current != wanted:
        atomic_write_text(args.readme, text.replace(current, wanted))
    print(f"{args.readme}: benchmark table from {args.latest} ({'rewritten' if current != wanted else 'unchanged'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
