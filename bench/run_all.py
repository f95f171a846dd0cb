"""Run every benchmark in bench/ and write one report: `bench/results/latest.json` (every result, the
machine, library versions, git commit) and `bench/results/latest.md` (a table of ratios, each against
a baseline the bench measured in the same run), then print the table.

A benchmark is any bench/*.py with a top-level `main` (this runner excepted). Each runs in its own
subprocess with a time budget; one that fails or runs out of time is marked so in the table and
makes the command exit 1, and the others still run. The budgets add up to under 20 minutes on a
2-core machine (`--total-budget`).

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
# Seconds each full bench may take on 2 CPU cores: about 3x its time on an idle machine, as the machine may be
# shared. A bench not listed gets DEFAULT_BUDGET; all together are cut to TOTAL_BUDGET.
BUDGETS = {"cider": 120, "compute_efficiency": 150, "feature_cache": 90, "generation": 240, "serve_batching": 180,
           "startup": 60, "tiled_inference": 420, "train_overhead": 120}
DEFAULT_BUDGET = 150
TOTAL_BUDGET = 19 * 60
QUICK_BUDGET = 300
# Two Ray clusters on one machine fight over ports and memory, so benches that start Ray take this lock.
RAY_LOCK = os.environ.get("RSFORGE_RAY_LOCK", "/tmp/rsforge-ray.lock")
RAY_MODULES = ("ray", "rsforge.train", "rsforge.serve")
VERSIONED = ("torch", "transformers", "timm", "ray", "pydantic", "numpy")


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def discover(directory: Path = BENCH_DIR) -> list[Path]:
    """bench/*.py scripts with a top-level `def main`, this runner excepted, sorted by name."""
    return [
        path for path in sorted(directory.glob("*.py"))
        if path.resolve() != Path(__file__).resolve()
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


def markdown(report: dict) -> str:
    lines = [
        f"# Benchmarks{' (quick)' if report['quick'] else ''}",
        "",
        f"{report['created']}, commit `{(report['git']['commit'] or 'unknown')[:12]}`"
        f"{' (uncommitted changes)' if report['git']['dirty'] else ''}; {report['machine']['cpu']}, "
        f"{report['machine']['usable_cores']} cores, {report['machine']['ram_gib']} GiB RAM, "
        f"GPU: {', '.join(report['machine']['gpu'] or ['none'])}; torch {report['versions'].get('torch')}.",
        "",
        "Each ratio compares rsforge with a baseline measured in the same run (see bench/README.md).",
        "",
        "| benchmark | case | ratio | value | bench time |",
        "|---|---|---|---|---|",
    ]
    for name, entry in report["benchmarks"].items():
        took = f"{entry['seconds']:.0f} s"
        if entry["status"] != "ok":
            error = entry["error"].replace("|", "/")
            lines.append(f"| {name} | - | **{entry['status'].upper()}**: {error} | - | {took} |")
            continue
        for row in entry["result"]["rows"]:
            for key, value in row.items():
                if key.startswith("ratio"):
                    lines.append(f"| {name} | {_case(row)} | {key.removeprefix('ratio_')} | {value:.3g} | {took} |")
    lines += ["", f"Total {report['total_s']:.0f} s."]
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
    report = {
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "quick": args.quick,
        "machine": machine(), "versions": versions(), "git": git_state(),
        "total_s": time.perf_counter() - started, "benchmarks": benchmarks,
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
