"""The kernel imports no plugin and no Ray; a plugin imports only rsforge.core of rsforge."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = {"encoders", "bridges", "decoders", "heads", "rewards", "train", "serve"}
SOURCES = {"core": ROOT / "packages/core/src/rsforge/core"} | {
    name: ROOT / ("services" if name in {"train", "serve"} else "packages") / name / "src/rsforge" / name
    for name in PLUGINS
}


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _violations(package: str) -> list[str]:
    found = []
    for path in sorted(SOURCES[package].rglob("*.py")):
        for name in _imports(path):
            top, _, rest = name.partition(".")
            if top == "rsforge":
                owner = rest.split(".")[0]
                if owner not in {package, "core"}:
                    found.append(f"{path.relative_to(ROOT)} imports {name}")
            elif package == "core" and top == "ray":
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


@pytest.mark.parametrize("package", sorted(SOURCES))
def test_import_rules(package):
    assert SOURCES[package].is_dir()
    assert _violations(package) == []


def test_rsforge_is_a_namespace_package():
    assert not list(ROOT.glob("packages/*/src/rsforge/__init__.py"))
    assert not list(ROOT.glob("services/*/src/rsforge/__init__.py"))


def test_the_checker_catches_a_violation(tmp_path, monkeypatch):
    bad = tmp_path / "rsforge" / "core"
    bad.mkdir(parents=True)
    (bad / "sneaky.py").write_text("import ray\nfrom rsforge.encoders.timm_encoder import TimmEncoder\n")
    monkeypatch.setitem(SOURCES, "core", bad)
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert len(_violations("core")) == 2
