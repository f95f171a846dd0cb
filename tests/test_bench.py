"""Every benchmark's --quick form runs, so `bench/` cannot rot; the pairing helper, the goals and the
`make bench` runner report what they should, and the README's benchmark table is what latest.md says.
No timing is asserted."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys

import pytest

from .conftest import ROOT

BENCH = ROOT / "bench"
RUNNER = runpy.run_path(str(BENCH / "run_all.py"))
TABLE = runpy.run_path(str(BENCH / "readme_table.py"))
# Discovered as the runner discovers them, so benches added later are covered the day they land.
# Benches that start Ray are marked `ray` (on a shared machine run them under the Ray lock).
BENCHES = [pytest.param(path.name, marks=[pytest.mark.ray] if RUNNER["uses_ray"](path) else [], id=path.name)
           for path in RUNNER["discover"]()]
# Not an A/B timing, so no pairs: a score ratio (CIDEr-D after vs before).
SINGLE_VALUE = {"scst_signals.py"}


@pytest.fixture
def pairs(monkeypatch):
    """bench/pairs.py, importable as the benches import it (run as scripts, bench/ is on their path)."""
    monkeypatch.syspath_prepend(str(BENCH))
    import pairs

    return pairs


def test_discovery_finds_the_benches_but_not_the_tools():
    names = {param.values[0] for param in BENCHES}
    assert {"generation.py", "startup.py", "compute_efficiency.py", "tiled_inference.py"} <= names
    assert not {"run_all.py", "readme_table.py", "pairs.py"} & names


def _check_spread(value: float, spread: dict) -> None:
    assert spread["min"] <= spread["q1"] <= value <= spread["q3"] <= spread["max"]
    assert isinstance(spread["pairs"], int) and spread["pairs"] >= 1


@pytest.mark.parametrize("script", BENCHES)
def test_benchmark_quick_form_runs(script, tmp_path, pairs):
    module = runpy.run_path(str(BENCH / script))
    result = module["main"](["--quick", "--json", str(tmp_path / "out.json")])
    assert result["rows"] and (tmp_path / "out.json").is_file()
    ratios = [(key.removeprefix("ratio_"), value, row) for row in result["rows"] for key, value in row.items()
              if key.startswith("ratio")]
    assert ratios and all(value > 0 for _, value, _ in ratios)
    for what, value, row in ratios:
        if script not in SINGLE_VALUE or f"spread_{what}" in row:
            _check_spread(value, row[f"spread_{what}"])


def test_interleave_alternates_the_order_after_untimed_warm_ups(pairs):
    calls = []

    def variant(name):
        return lambda: calls.append(name) or float(len(calls))

    measured = pairs.interleave({"a": variant("a"), "b": variant("b")}, 3, warmup=2)
    assert calls == ["a", "b", "a", "b", "a", "b", "b", "a", "a", "b"]
    assert measured == {"a": [5.0, 8.0, 9.0], "b": [6.0, 7.0, 10.0]}


def test_summary_and_ratio_fields(pairs):
    spread = pairs.paired([2.0, 4.0, 6.0, 8.0, 10.0], [1.0, 1.0, 2.0, 2.0, 1.0])  # 2, 4, 3, 4, 10
    assert spread == {"median": 4.0, "q1": 3.0, "q3": 4.0, "min": 2.0, "max": 10.0, "pairs": 5}
    assert pairs.ratio("speedup", spread) == {"ratio_speedup": 4.0, "spread_speedup": {
        "q1": 3.0, "q3": 4.0, "min": 2.0, "max": 10.0, "pairs": 5}}
    assert pairs.summary([1.5]) == {"median": 1.5, "q1": 1.5, "q3": 1.5, "min": 1.5, "max": 1.5, "pairs": 1}
    with pytest.raises(ValueError, match="not pairs"):
        pairs.paired([1.0, 2.0], [1.0])


def test_goals_come_from_the_bench_readme_and_name_real_benches():
    goals = RUNNER["read_goals"](RUNNER["GOALS_FILE"].read_text())
    found = {(g["benchmark"], g["ratio"], g["text"]) for g in goals}
    assert {("startup", "vs_python_pass", "<= 12"), ("train_overhead", "ray_vs_plain", ">= 0.9"),
            ("tiled_inference", "of_model_forward", ">= 0.8"), ("cider", "speedup", ">= 50"),
            ("feature_cache", "cached_vs_uncached", ">= 2"), ("serve_batching", "throughput", ">= 3")} <= found
    assert {g["benchmark"] for g in goals} <= {path.stem for path in RUNNER["discover"]()}
    serve = next(g for g in goals if g["benchmark"] == "serve_batching")
    assert serve["case"] == {"path": "http", "concurrency": "32"}


@pytest.mark.parametrize(("goal", "q1", "q3", "expected"), [
    (">= 2", 2.1, 3.0, "pass"), (">= 2", 1.0, 1.9, "fail"), (">= 2", 1.9, 2.1, "inconclusive"),
    ("<= 12", 8.0, 11.0, "pass"), ("<= 12", 12.5, 14.0, "fail"), ("<= 12", 11.0, 13.0, "inconclusive"),
])
def test_verdict_by_the_interquartile_range(goal, q1, q3, expected):
    op, bound = goal.split()
    spread = {"q1": q1, "q3": q3, "min": 0.1, "max": 100.0, "pairs": 9}
    assert RUNNER["verdict"]({"op": op, "bound": float(bound)}, (q1 + q3) / 2, spread) == expected


def test_table_shows_spreads_goals_and_single_values():
    goals = RUNNER["read_goals"]("| benchmark | ratio | case | goal |\n|---|---|---|---|\n| paired | speedup | "
                                 "mode=fast | >= 50 |\n| split | rewards_vs_model | any | <= 1 |\n")
    spread = {"q1": 45.0, "q3": 60.0, "min": 40.0, "max": 70.0, "pairs": 7}
    benchmarks = {
        "paired": {"status": "ok", "seconds": 20.0, "result": {"rows": [
            {"mode": "fast", "ratio_speedup": 55.0, "spread_speedup": spread},
            {"mode": "slow", "ratio_speedup": 17.0, "spread_speedup": spread}]}},
        "split": {"status": "ok", "seconds": 5.0,
                  "result": {"rows": [{"mode": "rollout", "ratio_rewards_vs_model": 0.5}]}},
    }
    measured = RUNNER["ratios"](benchmarks, goals)
    assert [(r["case"], r["goal"], r["verdict"]) for r in measured] == [
        ("mode=fast", ">= 50", "inconclusive"), ("mode=slow", None, None), ("mode=rollout", "<= 1", "pass")]
    report = {"quick": False, "created": "now", "git": {"commit": None, "dirty": False}, "total_s": 25.0,
              "machine": {"cpu": "cpu", "usable_cores": 2, "ram_gib": 8, "gpu": None}, "versions": {},
              "benchmarks": benchmarks, "ratios": measured, "unmeasured": []}
    table = RUNNER["markdown"](report)
    assert "| paired | mode=fast | speedup | 55 | 45-60 | 40-70 | 7 | >= 50 | inconclusive | 20 s |" in table
    assert "| paired | mode=slow | speedup | 17 | 45-60 | 40-70 | 7 | - | - | 20 s |" in table
    assert "| split | mode=rollout | rewards_vs_model | 0.5 | - | - | - | <= 1 | pass | 5 s |" in table
    del benchmarks["paired"]["result"]["rows"][0]
    assert RUNNER["unmeasured"](benchmarks, goals) == ["paired speedup (mode=fast)"]


def test_runner_quick_writes_json_and_table(tmp_path, capsys):
    report = RUNNER["main"](["--quick", "--only", "startup,compute_efficiency", "--out", str(tmp_path)])
    assert report["failed"] == []
    saved = json.loads((tmp_path / "latest.json").read_text())
    assert set(saved["benchmarks"]) == {"startup", "compute_efficiency"}
    assert all(entry["status"] == "ok" for entry in saved["benchmarks"].values())
    assert {"cpu", "cores", "ram_gib", "gpu"} <= set(saved["machine"])
    assert {"python", "torch", "transformers", "timm", "ray", "rsforge-core"} <= set(saved["versions"])
    assert len(saved["git"]["commit"]) == 40
    assert all(r["spread"]["pairs"] == 3 for r in saved["ratios"])
    startup = [r for r in saved["ratios"] if r["benchmark"] == "startup"]
    assert len(startup) == 3 and {r["goal"] for r in startup} == {"<= 12"}
    assert {r["verdict"] for r in startup} == {None}  # a quick run's cases are not the goals'
    table = (tmp_path / "latest.md").read_text()
    assert "| startup | command=rsforge plugins | vs_python_pass |" in table
    assert "| compute_efficiency | recipe=tiny.yaml, batch=2 | of_matmul_flops |" in table
    assert " | 3 | <= 12 | - | " in table
    assert table in capsys.readouterr().out


@pytest.fixture
def benches(tmp_path):
    """A bench folder with a broken, a good and a slow benchmark, and a helper module."""
    benches = tmp_path / "benches"
    benches.mkdir()
    ok = ('import json, sys\n'
          'def main(argv=None):\n'
          '    out = {"benchmark": "ok", "quick": True, "rows": [{"case": "a", "ratio_vs_base": 2.0}]}\n'
          '    json.dump(out, open(sys.argv[sys.argv.index("--json") + 1], "w"))\n'
          '    return out\n'
          'main()\n')
    (benches / "a_broken.py").write_text('def main(argv=None):\n    raise RuntimeError("bench exploded")\nmain()\n')
    (benches / "b_ok.py").write_text(ok)
    (benches / "c_slow.py").write_text("import time\ndef main(argv=None):\n    time.sleep(60)\nmain()\n")
    (benches / "helper.py").write_text("X = 1\n")  # no main: not a benchmark
    return benches


def test_runner_reports_failures_and_keeps_going(benches, tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run_all.py"), "--quick", "--dir", str(benches), "--out",
         str(tmp_path / "out"), "--timeout", "5"],
        capture_output=True, text=True,
    )
    assert done.returncode == 1, done.stderr
    saved = json.loads((tmp_path / "out" / "latest.json").read_text())["benchmarks"]
    assert list(saved) == ["a_broken", "b_ok", "c_slow"]
    assert saved["a_broken"]["status"] == "failed" and "bench exploded" in saved["a_broken"]["error"]
    assert saved["b_ok"]["status"] == "ok"
    assert saved["c_slow"]["status"] == "timeout"
    table = (tmp_path / "out" / "latest.md").read_text()
    assert "| a_broken | - | **FAILED**: RuntimeError: bench exploded |" in table
    assert "| b_ok | case=a | vs_base | 2 | - | - | - | - | - |" in table
    assert "| c_slow | - | **TIMEOUT**" in table


def test_runner_skips_what_the_total_budget_leaves_no_time_for(benches, tmp_path):
    report = RUNNER["main"](["--quick", "--dir", str(benches), "--out", str(tmp_path), "--total-budget", "0"])
    assert report["failed"] == ["a_broken", "b_ok", "c_slow"]
    assert {entry["status"] for entry in report["benchmarks"].values()} == {"skipped"}
    assert "| b_ok | - | **SKIPPED**: total budget of 0 s used up |" in (tmp_path / "latest.md").read_text()


def test_readme_benchmark_table_is_rendered_from_latest_md():
    """`make bench` rewrites it with bench/readme_table.py; after a run by hand, run that script."""
    readme = (ROOT / "README.md").read_text()
    assert TABLE["readme_block"](readme) == TABLE["render"](TABLE["parse"](TABLE["LATEST"].read_text()))


def test_readme_table_renders_old_and_new_latest_md(tmp_path):
    old = ("# Benchmarks\n\nday, commit `abc`.\n\nEach ratio compares ...\n\n| benchmark | case | ratio | value | "
           "bench time |\n|---|---|---|---|---|\n| cider | mode=fitted | speedup | 57 | 8 s |\n\nTotal 9 s.\n")
    block = TABLE["render"](TABLE["parse"](old))
    assert "Benchmarks (`bench/results/latest.md`): day, commit `abc`. Total 9 s." in block
    assert "| cider | mode=fitted | speedup | 57 | - | - | - | - | - |" in block
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{TABLE['BEGIN']}\nstale\n{TABLE['END']}\nrest\n")
    (tmp_path / "latest.md").write_text(old)
    args = ["--latest", str(tmp_path / "latest.md"), "--readme", str(readme)]
    assert TABLE["main"]([*args, "--check"]) == 1
    assert TABLE["main"](args) == 0 and TABLE["main"]([*args, "--check"]) == 0
    assert readme.read_text() == f"intro\n{block}\nrest\n"
