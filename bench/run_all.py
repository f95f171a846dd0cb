"""Run every benchmark in bench/ and write one report: `bench/results/latest.json` (every result, the
machine, library versions, git commit) and `bench/results/latest.md` (a table of ratios, each against
a baseline the bench measured in the same run, with its spread over the pairs and its goal), then
print the table.

A benchmark is any bench/*.py with a top-level `main` (this runner and readme_table.py excepted). Each
runs in its own subprocess with a time budget; one that fails or runs out of time is marked so in the
table and makes the command exit 1, and the others still run. All together are cut to 14 minutes
(`--total-budget`). The goals are read from the table under "## Goals" in bench/README.md; a ratio
within its goal is "pass", beyond it "fail", and "inconclusive" when its interquartile range over the
pairs crosses the goal (a bench reports `ratio_<what>` as the median and `spread_<what>` as
{q1, q3, min, max, pairs}: `pairs.py`).

    python bench/run_all.py [--quick] [--only a,b] [--out DIR]     # `make bench` runs it in full
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime as dt
import fcntl
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from tqdm import tqdm

from rsforge.core.atomic import atomic_write_text

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
# Seconds each full bench may take on 2 CPU cores: about twice its time on a 2-core machine other work
# shares. A bench not listed gets DEFAULT_BUDGET; all together are cut to TOTAL_BUDGET, so `make bench`
# ends within 15 minutes.
BUDGETS = {"cider": 75, "compute_efficiency": 75, "feature_cache": 90, "generation": 90, "serve_batching": 200,
           "startup": 45, "tiled_inference": 300, "train_overhead": 180, "scst_signals": 240, "scst_split": 90}
DEFAULT_BUDGET = 150
TOTAL_BUDGET = 14 * 60
QUICK_BUDGET = 300
# Two Ray clusters on one machine fight over ports and memory, so benches that start Ray take this lock.
RAY_LOCK = os.environ.get("RSFORGE_RAY_LOCK", "/tmp/rsforge-ray.lock")
RAY_MODULES = ("ray", "rsforge.train", "rsforge.serve")
VERSIONED = ("torch", "transformers", "timm", "ray", "pydantic", "numpy")
NOT_BENCHES = ("run_all", "readme_table")  # tools in bench/ with a `main`
GOALS_FILE = BENCH_DIR / "README.md"
GOALS_HEADER = "| benchmark | ratio | case | goal |"


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def discover(directory: Path = BENCH_DIR) -> list[Path]:
    """bench/*.py scripts with a top-level `def main`, the tools in NOT_BENCHES excepted, sorted by name."""
    return [
        path for path in sorted(directory.glob("*.py"))
        if path.stem not in NOT_BENCHES
        and any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in _tree(path).body)
    ]


def uses_ray(path: Path) -> bool:
    for node in ast.walk(_tree(path)):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        if any(name == m or name.startswith(m + ".") for name in names for m in RAY_MODULES):
            return True
    return False


@contextlib.contextmanager
def ray_lock(needed: bool):
    if not needed:
        yield
        return
    with open(RAY_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # blocks until no other Ray user holds it; not timed
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_bench(path: Path, *, quick: bool, timeout: float, workdir: Path) -> dict:
    out = workdir / f"{path.stem}.json"
    command = [sys.executable, str(path), "--json", str(out), *(["--quick"] if quick else [])]
    with ray_lock(uses_ray(path)):
        start = time.perf_counter()
        # Its own process group, so a bench that runs out of time goes with its workers (tiles, Ray).
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                 start_new_session=True)
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            try:
                _, stderr = child.communicate(timeout=10)
            except subprocess.TimeoutExpired:  # a daemon outside the group still holds the pipe
                stderr = ""
            return {"status": "timeout", "seconds": time.perf_counter() - start, "timeout_s": timeout,
                    "error": f"ran past its {timeout:.0f} s budget", "stderr_tail": stderr[-2000:]}
        seconds = time.perf_counter() - start
    entry = {"seconds": seconds, "timeout_s": timeout, "stdout": stdout}
    if child.returncode != 0:
        last = stderr.strip().splitlines()[-1:] or [f"exit status {child.returncode}"]
        return {**entry, "status": "failed", "error": last[0], "stderr_tail": stderr[-2000:]}
    if not out.is_file():
        return {**entry, "status": "failed", "error": f"exited 0 but wrote no --json file ({out.name})"}
    result = json.loads(out.read_text())
    bad = [key for row in result.get("rows", []) for key, value in row.items()
           if key.startswith("ratio") and not (isinstance(value, int | float) and value > 0)]
    if not result.get("rows") or bad:
        why = f"non-positive ratios {sorted(set(bad))}" if bad else "no rows"
        return {**entry, "status": "failed", "error": f"result has {why}", "result": result}
    return {**entry, "status": "ok", "result": result}


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() \
        else []
    return {"cpu": cpu, "cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "ram_gib": round(ram / 2**30, 1) if ram else None, "gpu": gpus or None,
            "os": platform.platform()}


def versions() -> dict:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    for dist in metadata.distributions():
        name = dist.metadata["Name"] or ""
        if name.lower().startswith("rsforge"):
            found[name] = dist.version
    return dict(sorted(found.items(), key=lambda kv: (kv[0] != "python", kv[0].startswith("rsforge"), kv[0])))


def git_state() -> dict:
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    status = git("status", "--porcelain")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


def _case(row: dict) -> str:
    """What a row measures (batch size, command, ...): its fields that are neither ratios nor measurements."""
    parts = [f"{k}={v}" for k, v in row.items()
             if not k.startswith("ratio") and isinstance(v, str | int) and not isinstance(v, bool)]
    return ", ".join(parts) or "-"


def read_goals(text: str) -> list[dict]:
    """The goals table of bench/README.md: one {benchmark, ratio, case, op, bound} per row. `case` is
    {field: value} a row must have (empty: any row of that benchmark and ratio)."""
    lines = text.splitlines()
    if GOALS_HEADER not in lines:
        raise ValueError(f"no goals table ({GOALS_HEADER}) in {GOALS_FILE}")
    goals = []
    for line in lines[lines.index(GOALS_HEADER) + 2:]:
        if not line.startswith("|"):
            break
        bench, what, case, goal = (cell.strip().strip("`") for cell in line.strip("|").split("|"))
        found = re.fullmatch(r"(<=|>=)\s*([0-9.]+)", goal)
        if not found:
            raise ValueError(f"{GOALS_FILE}: goal {goal!r} of {bench} {what} is not '>= x' or '<= x'")
        conditions = dict(part.split("=", 1) for part in case.split(", ")) if case != "any" else {}
        goals.append({"benchmark": bench, "ratio": what, "case": conditions, "op": found[1],
                      "bound": float(found[2]), "text": f"{found[1]} {found[2]}"})
    return goals


def verdict(goal: dict, value: float, spread: dict | None) -> str:
    """pass / fail by the ratio's interquartile range (the median's when it has no spread); inconclusive
    when that range crosses the goal. Not min-max: on a shared machine one slow pair sets an extreme."""
    low, high = (spread["q1"], spread["q3"]) if spread else (value, value)
    if goal["op"] == ">=":
        return "pass" if low >= goal["bound"] else "fail" if high < goal["bound"] else "inconclusive"
    return "pass" if high <= goal["bound"] else "fail" if low > goal["bound"] else "inconclusive"


def _ratio_rows(benchmarks: dict):
    """(bench, ratio name, value, row) for every ratio of every bench that ran."""
    for name, entry in benchmarks.items():
        if entry["status"] == "ok":
            for row in entry["result"]["rows"]:
                for key, value in row.items():
                    if key.startswith("ratio_"):
                        yield name, key.removeprefix("ratio_"), value, row


def _applies(goal: dict, name: str, what: str, row: dict) -> bool:
    return goal["benchmark"] == name and goal["ratio"] == what and all(
        str(row.get(k)) == v for k, v in goal["case"].items())


def ratios(benchmarks: dict, goals: list[dict], *, judge: bool = True) -> list[dict]:
    """One entry per ratio of every bench that ran: its median, spread (None for a bench that reports a
    single value), goal and verdict (None without a goal, or when not `judge`d)."""
    found = []
    for name, what, value, row in _ratio_rows(benchmarks):
        spread = row.get(f"spread_{what}")
        goal = next((g for g in goals if _applies(g, name, what, row)), None)
        found.append({"benchmark": name, "case": _case(row), "ratio": what, "median": value, "spread": spread,
                      "goal": goal["text"] if goal else None,
                      "verdict": verdict(goal, value, spread) if goal and judge else None})
    return found


def unmeasured(benchmarks: dict, goals: list[dict]) -> list[str]:
    """Goals of benches that ran without a row the goal applies to (a renamed ratio or case)."""
    return [f"{g['benchmark']} {g['ratio']} ({', '.join(f'{k}={v}' for k, v in g['case'].items()) or 'any'})"
            for g in goals if benchmarks.get(g["benchmark"], {}).get("status") == "ok"
            and not any(_applies(g, name, what, row) for name, what, _, row in _ratio_rows(benchmarks))]


def _number(value: float) -> str:
    return f"{value:.3g}"


def markdown(report: dict) -> str:
    lines = [
        f"# Benchmarks{' (quick)' if report['quick'] else ''}",
        "",
        f"{report['created']}, commit `{(report['git']['commit'] or 'unknown')[:12]}`"
        f"{' (uncommitted changes)' if report['git']['dirty'] else ''}; {report['machine']['cpu']}, "
        f"{report['machine']['usable_cores']} cores, {report['machine']['ram_gib']} GiB RAM, "
        f"GPU: {', '.join(report['machine']['gpu'] or ['none'])}; torch {report['versions'].get('torch')}.",
        "",
        "Each ratio compares rsforge with a baseline measured in the same run, interleaved: the median over the "
        "pairs, its interquartile range (IQR) and min-max; verdict by the IQR against the goal (see bench/README.md)"
        + ("; none in a quick run, whose cases are smaller than the goals are for." if report["quick"] else "."),
        "",
        "| benchmark | case | ratio | median | IQR | min-max | pairs | goal | verdict | bench time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_bench: dict[str, list[dict]] = {}
    for entry in report["ratios"]:
        by_bench.setdefault(entry["benchmark"], []).append(entry)
    for name, entry in report["benchmarks"].items():
        took = f"{entry['seconds']:.0f} s"
        if entry["status"] != "ok":
            error = entry["error"].replace("|", "/")
            lines.append(f"| {name} | - | **{entry['status'].upper()}**: {error} | - | - | - | - | - | - | {took} |")
            continue
        for r in by_bench.get(name, []):
            spread = r["spread"]
            iqr, span, pairs = (f"{_number(spread['q1'])}-{_number(spread['q3'])}",
                                f"{_number(spread['min'])}-{_number(spread['max'])}", str(spread["pairs"])) \
                if spread else ("-", "-", "-")
            lines.append(f"| {name} | {r['case']} | {r['ratio']} | {_number(r['median'])} | {iqr} | {span} | {pairs} "
                         f"| {r['goal'] or '-'} | {r['verdict'] or '-'} | {took} |")
    lines += ["", f"Total {report['total_s']:.0f} s."]
    if report.get("unmeasured"):
        lines.append(f"Goals no row measured: {'; '.join(report['unmeasured'])}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="run each bench's --quick form (seconds each)")
    parser.add_argument("--dir", default=str(BENCH_DIR), help="folder of benchmark scripts (default: bench/)")
    parser.add_argument("--only", help="comma-separated bench names (file stems) to run; default all")
    parser.add_argument("--out", default=str(BENCH_DIR / "results"), help="folder for latest.json and latest.md")
    parser.add_argument("--timeout", type=float,
                        help="seconds each bench may take (default: its entry in BUDGETS; quick: 300)")
    parser.add_argument("--total-budget", type=float, default=TOTAL_BUDGET,
                        help="seconds for all benches together; each bench's budget is cut to what is left")
    args = parser.parse_args(argv)
    scripts = discover(Path(args.dir))
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - {p.stem for p in scripts})
        if unknown:
            parser.error(f"--only: no benchmark named {', '.join(unknown)}; found {', '.join(p.stem for p in scripts)}")
        scripts = [p for p in scripts if p.stem in wanted]
    started = time.perf_counter()
    benchmarks: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="rsforge-bench-") as workdir:
        progress = tqdm(scripts, desc="benchmarks", unit="bench")
        for path in progress:
            progress.set_postfix_str(path.stem)
            left = args.total_budget - (time.perf_counter() - started)
            own = args.timeout or (QUICK_BUDGET if args.quick else BUDGETS.get(path.stem, DEFAULT_BUDGET))
            budget = min(own, left)
            if budget <= 0:
                benchmarks[path.stem] = {"status": "skipped", "seconds": 0.0, "timeout_s": 0.0,
                                         "error": f"total budget of {args.total_budget:.0f} s used up"}
                continue
            benchmarks[path.stem] = entry = run_bench(path, quick=args.quick, timeout=budget, workdir=Path(workdir))
            tqdm.write(f"{path.stem}: {entry['status']} in {entry['seconds']:.0f} s"
                       + (f" ({entry['error']})" if entry["status"] != "ok" else ""))
    goals = read_goals(GOALS_FILE.read_text())
    # Quick runs measure smaller cases (encoders, scenes, batches) than the goals are for: no verdicts.
    measured = ratios(benchmarks, goals, judge=not args.quick)
    report = {
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "quick": args.quick,
        "machine": machine(), "versions": versions(), "git": git_state(),
        "total_s": time.perf_counter() - started, "ratios": measured,
        "unmeasured": [] if args.quick else unmeasured(benchmarks, goals),
        "benchmarks": benchmarks,
    }
    table = markdown(report)
    out = Path(args.out)
    atomic_write_text(out / "latest.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "latest.md", table)
    print(table)
    report["failed"] = sorted(name for name, entry in benchmarks.items() if entry["status"] != "ok")
    return report


if __name__ == "__main__":
    sys.exit(1 if main()["failed"] else 0)
