"""Start-up cost: wall time of `rsforge --help` (every plugin's commands declared) and `rsforge plugins`
(every installed plugin discovered and registered), and of `import rsforge.core`, each in a fresh
interpreter, against `python -c pass` in the same run.

Interleaved (`pairs.py`): after an untimed warm-up (the file-system cache, .pyc files), each round runs
the bare interpreter and the command back to back, in turns first, and a command's ratio in a round is
its time over the bare interpreter's, so a shared machine's load drifting during the run touches both
alike. Reported per command: the median ratio over the rounds, its interquartile and min-max spread.

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

from pairs import describe, interleave, paired, ratio

from rsforge.core.atomic import atomic_write_text

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
    rows = []
    for label, command in COMMANDS.items():
        variants = {"baseline": lambda: wall_time(BASELINE, env), "command": lambda c=command: wall_time(c, env)}
        seconds = interleave(variants, rounds, desc=None if args.quick else label)
        spread = paired(seconds["command"], seconds["baseline"])
        rows.append({"command": label, "median_s": statistics.median(seconds["command"]),
                     "baseline_median_s": statistics.median(seconds["baseline"]), "command_s": seconds["command"],
                     "baseline_s": seconds["baseline"], **ratio("vs_python_pass", spread)})
        print(f"{label:<22} {rows[-1]['median_s'] * 1000:>6.0f} ms, `python -c pass` "
              f"{rows[-1]['baseline_median_s'] * 1000:.0f} ms: {describe(spread)}")
    result = {"benchmark": "startup", "quick": args.quick, "rounds": rounds,
              "argv": {label: command for label, command in COMMANDS.items()}, "rows": rows}
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
