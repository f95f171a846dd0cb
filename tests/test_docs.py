"""docs/plugins.md documents every hookspec with the signature the code has, and an example."""

from __future__ import annotations

import inspect
import re

import pytest

from rsforge.core import hookspecs

from .conftest import ROOT

DOC = ROOT / "docs" / "plugins.md"
# A hook's section: "### `name(args)`" up to the next heading of level 2 or 3.
SECTION = re.compile(r"^### `(?P<name>\w+)(?P<sig>\(.*?\))`\n(?P<body>.*?)(?=^##)", re.M | re.S)


def hookspec_signatures() -> dict[str, str]:
    """The functions pluggy's HookspecMarker decorated, as `name -> (args)`."""
    marker = f"{hookspecs.PROJECT}_spec"  # the attribute HookspecMarker sets on each spec function
    return {name: str(inspect.signature(fn)) for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
            if hasattr(fn, marker)}


def documented() -> dict[str, tuple[str, str]]:
    return {m["name"]: (m["sig"], m["body"]) for m in SECTION.finditer(DOC.read_text() + "\n## end")}


def test_the_hookspecs_are_found():
    assert {"register_encoders", "register_bridges", "register_commands"} <= set(hookspec_signatures())


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
