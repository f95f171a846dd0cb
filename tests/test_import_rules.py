"""The tiers, enforced on the source: kernel <- part plugins and libraries <- services.

- the kernel (`rsforge.core`) imports no other rsforge package and no Ray;
- a part plugin (encoders, bridges, decoders, heads, rewards) imports only the kernel;
- a library (datasets, tasks, geo) imports the kernel and the libraries it declares as dependencies;
- a service (train, serve) imports the kernel and libraries, never a part plugin (it finds parts
  through hooks);
- every rsforge package a distribution imports is declared in its pyproject.toml, and the
  library dependencies form no cycle.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIERS = {
    "core": "kernel",
    **dict.fromkeys(("encoders", "bridges", "decoders", "heads", "rewards"), "plugin"),
    **dict.fromkeys(("datasets", "tasks", "geo", "convert"), "library"),
    **dict.fromkeys(("train", "serve"), "service"),
}
ALLOWED = {"kernel": set(), "plugin": {"kernel"}, "library": {"kernel", "library"}, "service": {"kernel", "library"}}


def package_dir(name: str) -> Path:
    return ROOT / ("services" if TIERS[name] == "service" else "packages") / name


def sources(name: str) -> Path:
    return package_dir(name) / "src" / "rsforge" / name


def declared(name: str) -> set[str]:
    """The rsforge packages a distribution depends on, by its pyproject.toml."""
    project = tomllib.loads((package_dir(name) / "pyproject.toml").read_text())["project"]
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    names = {req.split(">")[0].split("[")[0].split("<")[0].split("=")[0].strip() for req in requirements}
    return {n.removeprefix("rsforge-") for n in names if n.startswith("rsforge-")} - {name}


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def violations(name: str) -> list[str]:
    tier, deps, found = TIERS[name], declared(name), []
    for path in sorted(sources(name).rglob("*.py")):
        where = path.relative_to(ROOT)
        for module in _imports(path):
            top, _, rest = module.partition(".")
            owner = rest.split(".")[0]
            if top == "ray" and tier == "kernel":
                found.append(f"{where} imports {module}: the kernel imports no Ray")
            if top != "rsforge" or owner == name:
                continue
            if TIERS.get(owner) is None:
                found.append(f"{where} imports {module}: no such rsforge package")
            elif TIERS[owner] not in ALLOWED[tier]:
                found.append(f"{where} imports {module}: a {tier} may not import a {TIERS[owner]}")
            elif owner != "core" and owner not in deps:
                found.append(f"{where} imports {module}, but rsforge-{owner} is not in its pyproject dependencies")
    return found


@pytest.mark.parametrize("name", sorted(TIERS))
def test_import_rules(name):
    assert sources(name).is_dir()
    assert violations(name) == []


def test_library_dependencies_have_no_cycle():
    graph = {name: declared(name) & {n for n, t in TIERS.items() if t == "library"}
             for name, tier in TIERS.items() if tier == "library"}
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, f"library dependency cycle: {' -> '.join((*path, node))}"
        if node not in done:
            for nxt in graph[node]:
                visit(nxt, (*path, node))
            done.add(node)

    for name in graph:
        visit(name, ())


def test_rsforge_is_a_namespace_package():
    assert not list(ROOT.glob("packages/*/src/rsforge/__init__.py"))
    assert not list(ROOT.glob("services/*/src/rsforge/__init__.py"))
    for name in TIERS:
        assert (sources(name) / "__init__.py").is_file(), f"rsforge.{name} has no __init__.py"


def test_the_checker_catches_each_kind_of_violation(tmp_path, monkeypatch):
    for name in ("core", "bridges", "serve"):
        bad = tmp_path / name / "src" / "rsforge" / name
        bad.mkdir(parents=True)
        (tmp_path / name / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["rsforge-core"]\n')
    (tmp_path / "core/src/rsforge/core/sneaky.py").write_text("import ray\nfrom rsforge.datasets import images\n")
    (tmp_path / "bridges/src/rsforge/bridges/sneaky.py").write_text("from rsforge.datasets.images import load_image\n")
    (tmp_path / "serve/src/rsforge/serve/sneaky.py").write_text(
        "from rsforge.encoders.timm_encoder import TimmEncoder\nfrom rsforge.tasks import task\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    monkeypatch.setattr(f"{__name__}.package_dir", lambda name: tmp_path / name)
    assert len(violations("core")) == 2
    assert violations("bridges") == ["bridges/src/rsforge/bridges/sneaky.py imports rsforge.datasets.images: "
                                     "a plugin may not import a library"]
    found = violations("serve")
    assert len(found) == 2 and "a service may not import a plugin" in found[0]
    assert "rsforge-tasks is not in its pyproject dependencies" in found[1]


def _module_graph() -> dict[str, set[str]]:
    """rsforge module -> the rsforge modules it imports (at top level or inside functions alike)."""
    paths = {}
    for name in TIERS:
        for path in sources(name).rglob("*.py"):
            parts = path.relative_to(sources(name).parents[1]).with_suffix("").parts
            paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for module, path in paths.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            targets |= {n for n in names if n in paths and n != module}
        graph[module] = targets
    return graph


def test_no_import_cycle():
    graph, state, cycles = _module_graph(), {}, []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                path = stack[stack.index(nxt):] if nxt in stack else []
                cycles.append(" -> ".join([*path, node, nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, node])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert cycles == []
