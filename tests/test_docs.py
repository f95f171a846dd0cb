"""docs/plugins.md against the code: every hookspec with its signature and an example, every public
class (and type alias) of rsforge.core.interfaces and rsforge.core.batch with each of its members,
every config base class; every code block parses, its imports and registrations exist, the blocks
quoting the example plugin are its files, and the blocks marked to run do."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import subprocess
import sys
import tomllib

import pytest
import yaml

from rsforge.core import batch, configs, hookspecs, interfaces

from .conftest import ROOT

DOC = ROOT / "docs" / "plugins.md"
EXAMPLE = ROOT / "examples" / "rsforge-example-plugin"
# A hook's section: "### `name(args)`" up to the next heading of level 2 or 3.
SECTION = re.compile(r"^### `(?P<name>\w+)(?P<sig>\(.*?\))`\n(?P<body>.*?)(?=^##)", re.M | re.S)
# An interface's section: "### `Name`", likewise.
CLASS_SECTION = re.compile(r"^### `(?P<name>\w+)`\n(?P<body>.*?)(?=^##)", re.M | re.S)
# A fenced code block, with the "<!-- who: run -->" line that may precede it.
FENCE = re.compile(r"(?:^<!-- (?P<runner>\w+): run -->\n)?^```(?P<lang>\w*)\n(?P<code>.*?)^```", re.M | re.S)
INTERFACE_MODULES = (interfaces, batch)


def hookspec_signatures() -> dict[str, str]:
    """The functions pluggy's HookspecMarker decorated, as `name -> (args)`."""
    marker = f"{hookspecs.PROJECT}_spec"  # the attribute HookspecMarker sets on each spec function
    return {name: str(inspect.signature(fn)) for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
            if hasattr(fn, marker)}


def documented() -> dict[str, tuple[str, str]]:
    return {m["name"]: (m["sig"], m["body"]) for m in SECTION.finditer(DOC.read_text() + "\n## end")}


def documented_classes() -> dict[str, str]:
    return {m["name"]: m["body"] for m in CLASS_SECTION.finditer(DOC.read_text() + "\n## end")}


def code_blocks(lang: str) -> list[tuple[str, str | None]]:
    """(code, who runs it) of each block in `lang`."""
    return [(m["code"], m["runner"]) for m in FENCE.finditer(DOC.read_text()) if m["lang"] == lang]


def public_classes(module) -> dict[str, type]:
    return {name: cls for name, cls in inspect.getmembers(module, inspect.isclass)
            if cls.__module__ == module.__name__ and not name.startswith("_")}


def public_interfaces() -> dict[str, object]:
    """What interfaces.py and batch.py define for others: their public classes, and their public
    module-level aliases (`OnTokens`)."""
    found: dict[str, object] = {}
    for module in INTERFACE_MODULES:
        found.update(public_classes(module))
        for node in ast.parse(inspect.getsource(module)).body:
            if isinstance(node, ast.Assign):
                found.update({t.id: getattr(module, t.id) for t in node.targets
                              if isinstance(t, ast.Name) and not t.id.startswith("_")})
    return found


def members(cls: type) -> set[str]:
    """The public attributes, abilities, fields and methods a class declares itself (not inherited)."""
    return {n for n in [*vars(cls), *inspect.get_annotations(cls)] if not n.startswith("_")}


def test_the_hookspecs_are_found():
    assert {"register_encoders", "register_bridges", "register_tasks", "register_commands"} <= set(
        hookspec_signatures())


def test_every_hookspec_is_documented_with_its_signature_and_an_example():
    docs = documented()
    for name, signature in hookspec_signatures().items():
        assert name in docs, f"hook {name}{signature} is missing from {DOC.name} (add '### `{name}{signature}`')"
        doc_signature, body = docs[name]
        assert doc_signature == signature, \
            f"{DOC.name} documents {name}{doc_signature}, the hookspec is {name}{signature}"
        assert f"def {name}{signature}:" in body and "@hookimpl" in body, f"{DOC.name}: {name} has no example"


def test_no_documented_hook_is_stale():
    stale = sorted(set(documented()) - set(hookspec_signatures()))
    assert not stale, f"{DOC.name} documents hooks that rsforge.core.hookspecs does not declare: {stale}"


def test_the_interfaces_are_found():
    found = public_interfaces()
    assert {"VisualFeatures", "Encoder", "Decoder", "Reward", "OnTokens", "Batch", "Losses"} <= set(found)
    assert "Turn" not in found  # imported there, defined in rsforge.core.sample
    assert {"streams", "scores_continuations", "count_tokens", "generate"} <= members(interfaces.Decoder)


def test_every_interface_is_documented_with_each_of_its_members():
    sections = documented_classes()
    for name, obj in public_interfaces().items():
        where = f"{obj.__module__}.{name}" if inspect.isclass(obj) else name
        assert name in sections, f"{where} is missing from {DOC.name} (add a '### `{name}`' section)"
        if inspect.isclass(obj):
            missing = sorted(m for m in members(obj) if not re.search(rf"`{m}[`(]", sections[name]))
            assert not missing, f"{DOC.name}, section {name}: undocumented members {missing}"


def test_no_documented_interface_is_stale():
    stale = sorted(set(documented_classes()) - set(public_interfaces()))
    assert not stale, f"{DOC.name} has sections for {stale}, which rsforge.core.interfaces/batch do not define"


def test_every_config_base_class_is_documented():
    text = DOC.read_text()
    missing = sorted(name for name in public_classes(configs) if f"`{name}`" not in text)
    assert not missing, f"{DOC.name} does not document the config classes {missing}"


def _example_module_defines(module: str, name: str) -> bool:
    """Whether the example plugin's `module` (not installed here) defines or imports `name`."""
    path = EXAMPLE / "src" / (module.replace(".", "/") + ".py")
    if not path.is_file():
        return False
    defined = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            defined.add(node.name)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign):
            defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return name in defined


def _resolves(module: str, name: str | None = None) -> bool:
    if module.split(".")[0] == "rsforge_example_plugin":
        return name is None or _example_module_defines(module, name)
    imported = importlib.import_module(module)
    return name is None or hasattr(imported, name)


def _registrations(tree: ast.AST):
    """(kind, register call) of each `register(...)` inside a `register_<kind>s` hook implementation."""
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef) and fn.name.startswith("register_") and fn.name != "register_commands":
            kind = fn.name.removeprefix("register_").removesuffix("s")
            for call in ast.walk(fn):
                if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "register":
                    yield kind, call


def test_python_blocks_parse_and_their_imports_exist():
    blocks = code_blocks("python")
    assert blocks
    for code, _ in blocks:
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.ImportFrom):
                missing = [a.name for a in node.names if not _resolves(node.module, a.name)]
                assert not missing, f"{DOC.name}: `from {node.module} import {', '.join(missing)}` fails"
            elif isinstance(node, ast.Import):
                assert all(_resolves(a.name) for a in node.names)


def test_documented_registrations_are_the_registered_parts(plugins):
    checked = 0
    for code, _ in code_blocks("python"):
        for kind, call in _registrations(ast.parse(code)):
            name = call.args[0].value if call.args and isinstance(call.args[0], ast.Constant) else None
            given = {kw.arg: kw.value for kw in call.keywords}
            factory = ast.literal_eval(given["factory"])
            if factory.startswith("rsforge_example_plugin."):  # not installed here: its own source
                assert _example_module_defines(*factory.split(":")), factory
                continue
            if name is None:  # a loop over names: each must be registered with this factory
                assert any(spec.factory == factory for spec in plugins.registry.parts[kind].values()), factory
                continue
            spec = plugins.registry.get(kind, name)
            assert spec.factory == factory, f"{DOC.name}: {kind} {name} is registered with {spec.factory}"
            config = given["config"]  # a class by name, or its import string
            shown = config.value if isinstance(config, ast.Constant) else ast.unparse(config)
            assert shown in (spec.config_source, spec.config.__name__), f"{DOC.name}: {kind} {name} config {shown}"
            for field in ("description", "example"):
                if field in given:
                    assert ast.literal_eval(given[field]) == getattr(spec, field), f"{DOC.name}: {kind} {name} {field}"
            checked += 1
    assert checked >= 6


def test_toml_and_yaml_blocks_parse():
    for code, _ in code_blocks("toml"):
        tomllib.loads(code)
    for code, _ in code_blocks("yaml"):
        yaml.safe_load(code)


def test_blocks_quoting_the_example_plugin_are_its_files():
    quoted = 0
    for lang in ("python", "toml", "yaml"):
        for code, _ in code_blocks(lang):
            first, _, rest = code.partition("\n")
            if first.startswith("# examples/rsforge-example-plugin/"):
                path = ROOT / first.removeprefix("# ")
                assert rest in path.read_text(), f"{DOC.name}: the block quoting {path.relative_to(ROOT)} differs"
                quoted += 1
    assert quoted >= 4


def test_runnable_blocks_run():
    blocks = [code for code, runner in code_blocks("python") if runner == "test_docs"]
    assert blocks
    for code in blocks:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-3000:]


def test_the_documented_registration_is_the_example_plugins():
    plugin = (ROOT / "examples/rsforge-example-plugin/src/rsforge_example_plugin/plugin.py").read_text()
    registration = plugin[plugin.index("@hookimpl"):].strip()
    assert registration in DOC.read_text()


# Each package README documents its parts and every option of their configs (a new option fails here
# until the README says what it does). Bridges, rewards and the services keep their own READMEs.
README_OF = {"rsforge-core": "packages/core", "rsforge-encoders": "packages/encoders",
             "rsforge-decoders": "packages/decoders", "rsforge-heads": "packages/heads"}


def _options(config_class) -> list[str]:
    return [name for name, field in config_class.model_fields.items() if name != "name" and not field.exclude]


def test_package_readmes_document_every_part_and_option(plugins):
    missing = []
    for kind, parts in plugins.registry.parts.items():
        for name, spec in parts.items():
            if spec.distribution not in README_OF:
                continue
            readme = ROOT / README_OF[spec.distribution] / "README.md"
            text = readme.read_text()
            if f"`{name}`" not in text:
                missing.append(f"{readme.relative_to(ROOT)}: {kind} {name}")
            missing += [f"{readme.relative_to(ROOT)}: {kind} {name}, option `{option}`"
                        for option in _options(spec.config) if f"`{option}`" not in text]
    assert not missing, "undocumented:\n" + "\n".join(missing)


def test_core_readme_documents_the_recipe_schema():
    from rsforge.core.recipe import EvalConfig, Recipe, StageConfig, TrainConfig

    text = (ROOT / "packages/core/README.md").read_text()
    for config_class in (Recipe, TrainConfig, StageConfig, EvalConfig):
        undocumented = [o for o in _options(config_class) if f"`{o}`" not in text]
        assert not undocumented, f"packages/core/README.md: {config_class.__name__} options {undocumented}"


def test_readme_plugin_section_shows_the_example_code():
    readme = (ROOT / "README.md").read_text()
    if "## Write your own plugin" not in readme:
        pytest.skip("README.md has no '## Write your own plugin' section yet")
    section = readme.split("## Write your own plugin", 1)[1].split("\n## ", 1)[0]
    example = ROOT / "examples/rsforge-example-plugin"
    files = [*example.rglob("*.py"), *example.rglob("*.yaml"), example / "pyproject.toml"]
    sources = "\n".join(p.read_text() for p in files)
    blocks = re.findall(r"```(?:python|toml|yaml)\n(.*?)```", section, re.S)
    assert blocks, "README.md: the plugin section shows no code"
    for block in blocks:
        stale = [line for line in block.splitlines() if line.strip() and line not in sources]
        assert not stale, f"README.md plugin section differs from {example.relative_to(ROOT)}: {stale[:3]}"
