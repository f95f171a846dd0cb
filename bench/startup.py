"""Start-up cost: wall time of `import rsforge.core` and of `rsforge plugins` (every installed plugin
discovered and registered), each in a fresh interpreter, against `python -c pass` in the same run.

Best of N runs per command (the minimum is the least noisy estimate of a cold-ish start on a shared
machine). Rows are ratios to the bare interpreter; absolute times are printed for reference only.

    python bench/startup.py [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

from rsforge.core.atomic import atomic_write_text

# `rsforge plugins` through the interpreter rather than the console script, so every command starts
# the same way and only the work it does differs.
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import rsforge.core": [sys.executable, "-c", "import rsforge.core"],
    "rsforge plugins": [sys.executable, "-c",
                        "import sys; from rsforge.core.cli import main; sys.exit(main(['plugins']))"],
}


def best_wall_time(command: list[str], repeats: int, env: dict[str, str]) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
        best = min(best, elapsed)
    return best


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two runs per command (for the test suite)")
    parser.add_argument("--repeats", type=int, help="runs per command, best taken (default 2 quick, 10 full)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 10)
    # Every installed plugin, and a plugin that fails to load must fail the bench, not be timed as fast.
    env = {k: v for k, v in os.environ.items() if k != "RSFORGE_LOAD_PLUGINS"}
    env["RSFORGE_STRICT_PLUGINS"] = "1"
    times = {}
    for label, command in tqdm(COMMANDS.items(), desc="startup", unit="command", leave=False):
        best_wall_time(command, 1, env)  # warm the file-system cache once, untimed
        times[label] = best_wall_time(command, repeats, env)
    baseline = times["python -c pass"]
    rows = [
        {"command": label, "best_s": seconds, "ratio_vs_python_pass": seconds / baseline,
         "overhead_s": seconds - baseline}
        for label, seconds in times.items() if label != "python -c pass"
    ]
    print(f"best of {repeats}; baseline `python -c pass` {baseline * 1000:.0f} ms")
    print(f"{'command':<22} {'best ms':>8} {'overhead ms':>12} {'vs python':>10}")
    for row in rows:
        print(f"{row['command']:<22} {row['best_s'] * 1000:>8.0f} {row['overhead_s'] * 1000:>12.0f} "
              f"{row['ratio_vs_python_pass']:>9.1f}x")
    result = {"benchmark": "startup", "quick": args.quick, "repeats": repeats, "baseline_s": baseline, "rows": rows}
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
