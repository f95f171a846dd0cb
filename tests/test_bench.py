"""Every benchmark's --quick form runs, so `bench/` cannot rot, and the `make bench` runner reports
results and failures. No timing is asserted."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys

import pytest

from .conftest import ROOT

RUNNER = runpy.run_path(str(ROOT / "bench" / "run_all.py"))
# Discovered as the runner discovers them, so benches added later are covered the day they land.
# Benches that start Ray are marked `ray` (on a shared machine run them under the Ray lock).
BENCHES = [pytest.param(path.name, marks=[pytest.mark.ray] if RUNNER["uses_ray"](path) else [], id=path.name)
           for path in RUNNER["discover"]()]


def test_discovery_finds_the_benches_but_not_the_runner():
    names = {param.values[0] for param in BENCHES}
    assert {"generation.py", "startup.py", "compute_efficiency.py"} <= names
    assert "run_all.py" not in names


@pytest.mark.parametrize("script", BENCHES)
def test_benchmark_quick_form_runs(script, tmp_path):
    module = runpy.run_path(str(ROOT / "bench" / script))
    result = module["main"](["--quick", "--json", str(tmp_path / "out.json")])
    assert result["rows"] and (tmp_path / "out.json").is_file()
    assert all(value > 0 for row in result["rows"] for key, value in row.items() if key.startswith("ratio"))


def test_runner_quick_writes_json_and_table(tmp_path, capsys):
    report = RUNNER["main"](["--quick", "--only", "startup,compute_efficiency", "--out", str(tmp_path)])
    assert report["failed"] == []
    saved = json.loads((tmp_path / "latest.json").read_text())
    assert set(saved["benchmarks"]) == {"startup", "compute_efficiency"}
    assert all(entry["status"] == "ok" for entry in saved["benchmarks"].values())
    assert {"cpu", "cores", "ram_gib", "gpu"} <= set(saved["machine"])
    assert {"python", "torch", "transformers", "timm", "ray", "rsforge-core"} <= set(saved["versions"])
    assert len(saved["git"]["commit"]) == 40
    table = (tmp_path / "latest.md").read_text()
    assert "| startup | command=rsforge plugins | vs_python_pass |" in table
    assert "| compute_efficiency | recipe=tiny.yaml, batch=2 | of_matmul_flops |" in table
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
    assert "| b_ok | case=a | vs_base | 2 |" in table
    assert "| c_slow | - | **TIMEOUT**" in table


def test_runner_skips_what_the_total_budget_leaves_no_time_for(benches, tmp_path):
    report = RUNNER["main"](["--quick", "--dir", str(benches), "--out", str(tmp_path), "--total-budget", "0"])
    assert report["failed"] == ["a_broken", "b_ok", "c_slow"]
    assert {entry["status"] for entry in report["benchmarks"].values()} == {"skipped"}
    assert "| b_ok | - | **SKIPPED**: total budget of 0 s used up |" in (tmp_path / "latest.md").read_text()
