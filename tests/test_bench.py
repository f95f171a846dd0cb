"""Every benchmark's --quick form runs, so `bench/` cannot rot. No timing is asserted."""

from __future__ import annotations

import runpy

import pytest

from .conftest import ROOT

BENCHES = sorted(p.name for p in (ROOT / "bench").glob("*.py"))


@pytest.mark.parametrize("script", BENCHES)
def test_benchmark_quick_form_runs(script, tmp_path):
    module = runpy.run_path(str(ROOT / "bench" / script))
    result = module["main"](["--quick", "--json", str(tmp_path / "out.json")])
    assert result["rows"] and (tmp_path / "out.json").is_file()
    assert all(value > 0 for row in result["rows"] for key, value in row.items() if key.startswith("ratio"))
