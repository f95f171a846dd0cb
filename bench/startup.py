"""Start-up cost: wall time of `rsforge --help` (every plugin's commands declared) and `rsforge plugins`
(every installed plugin discovered and registered), and of `import rsforge.core`, each in a fresh
interpreter, against `python -c pass` in the same run.

Interleaved: each round runs the bare interpreter right before each command (A B A B ...), after an
untimed warm-up round, and a command's ratio in a round is its time over the bare interpreter's just
before it, so a shared machine's load drifting during the run touches both alike. Reported per command:
the median ratio over the rounds and its min-max spread; absolute times are in the JSON for reference.
The goal is each command within 12x of `python -c pass`.

    python bench/startup.py [--quick] [--rounds N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

from rsforge.core.atomic import atomic_write_text

GOAL = 12.0  # each command within this many times `python -c pass`
BASELINE = [sys.executable, "-c", "pass"]


def _rsforge() -> list[str]:
    """The `rsforge` console script of this interpreter's environment, as a user runs it; else the
    same entry point through `python -m`."""
    script = Path(sys.executable).parent / "rsforge"
    if script.is_file():
        return [str(script)]
    found = shutil.which("rsforge")
    return [found] if found else [sys.executable, "-m", "rsforge.core.cli"]


COMMANDS = {
    "import rsforge.core": [sys.executable, "-c", "import rsforge.core"],
    "rsforge --help": [*_rsforge(), "--help"],
    "rsforge plugins": [*_rsforge(), "plugins"],
}


def wall_time(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return elapsed


def measure(commands: dict[str, list[str]], rounds: int, env: dict[str, str]) -> dict[str, dict[str, list[float]]]:
    """Per command, its times and those of the bare interpreter run just before it, one per round."""
    for command in [BASELINE, *commands.values()]:
        wall_time(command, env)  # warm-up: the file-system cache and .pyc files, untimed
    times = {label: {"command_s": [], "baseline_s": []} for label in commands}
    for _ in tqdm(range(rounds), desc="startup", unit="round", leave=False):
        for label, command in commands.items():
            times[label]["baseline_s"].append(wall_time(BASELINE, env))
            times[label]["command_s"].append(wall_time(command, env))
    return times


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three rounds (for the test suite)")
    parser.add_argument("--rounds", type=int, help="timed rounds after the warm-up (default 3 quick, 25 full)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 25)
    # Every installed plugin, and a plugin that fails to load must fail the bench, not be timed as fast.
    env = {k: v for k, v in os.environ.items() if k != "RSFORGE_LOAD_PLUGINS"}
    env["RSFORGE_STRICT_PLUGINS"] = "1"
    times = measure(COMMANDS, rounds, env)
    rows = []
    for label, measured in times.items():
        ratios = [c / b for c, b in zip(measured["command_s"], measured["baseline_s"], strict=True)]
        rows.append({"command": label, "ratio_vs_python_pass": statistics.median(ratios),
                     "spread_min": min(ratios), "spread_max": max(ratios),
                     "median_s": statistics.median(measured["command_s"]),
                     "baseline_median_s": statistics.median(measured["baseline_s"]),
                     "within_goal": statistics.median(ratios) <= GOAL, **measured})
    print(f"{rounds} interleaved rounds after a warm-up; goal: within {GOAL:g}x `python -c pass`")
    print(f"{'command':<22} {'median ms':>10} {'python ms':>10} {'vs python':>10} {'min-max':>13}")
    for row in rows:
        print(f"{row['command']:<22} {row['median_s'] * 1000:>10.0f} {row['baseline_median_s'] * 1000:>10.0f} "
              f"{row['ratio_vs_python_pass']:>9.1f}x {row['spread_min']:>6.1f}-{row['spread_max']:<5.1f}"
              f"{'' if row['within_goal'] else '  over the goal'}")
    result = {"benchmark": "startup", "quick": args.quick, "rounds": rounds, "goal_ratio": GOAL,
              "argv": {label: command for label, command in COMMANDS.items()}, "rows": rows}
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
