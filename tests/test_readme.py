"""Every code block of README.md that a user would run keeps working.

- shell blocks: each `rsforge ...` line parses with the real CLI (a renamed flag fails here);
  `rsforge plugins` and `rsforge recipe check recipes/...` run for real; `make` targets, installed
  paths and test files exist;
- yaml blocks of recipe sections (`train:`, `rewards:`) validate against the recipe schema;
- the `openai` client block runs against a served model in tests/test_serve_e2e.py;
- the plugin section's code is the example plugin's (tests/test_docs.py), which
  tests/test_plugin_example.py installs and runs; `make demo` runs the quick start.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest
import yaml

from rsforge.core.cli import build_parser, main
from rsforge.core.recipe import parse_recipe

from .conftest import ROOT

README = (ROOT / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def shell_commands() -> list[str]:
    """The commands of the README's bash blocks: continuation lines joined, comments dropped."""
    commands = []
    for block in blocks("bash"):
        for command in block.replace("\\\n", " ").splitlines():
            command = command.split(" #", 1)[0].strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


COMMANDS = shell_commands()
RSFORGE = [c for c in COMMANDS if c.startswith("rsforge ")]


def test_the_readme_has_the_commands_of_each_section():
    assert {"make demo", "make test"} <= set(COMMANDS)
    for sub in ("plugins", "recipe check", "train", "serve", "run", "eval", "detect", "data check"):
        assert any(c.startswith(f"rsforge {sub} ") or c == f"rsforge {sub}" for c in RSFORGE), sub


@pytest.mark.parametrize("command", RSFORGE)
def test_rsforge_commands_parse(command, plugins):
    args = build_parser(plugins).parse_args(shlex.split(command)[1:])  # argparse exits 2 on a bad flag
    assert hasattr(args, "func"), command


@pytest.mark.parametrize("command", [c for c in RSFORGE if c == "rsforge plugins"
                                     or c.startswith("rsforge recipe check recipes/")])
def test_cheap_rsforge_commands_run(command, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert main(shlex.split(command)[1:]) == 0, capsys.readouterr().err


def test_make_targets_install_paths_and_test_files_exist():
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    for command in COMMANDS:
        words = shlex.split(command)
        if words[0] == "make":
            assert set(words[1:]) <= targets, command
        if words[:2] == ["pip", "install"]:
            for path in words[2:]:
                assert (ROOT / path.split("[")[0]).is_dir(), f"{command}: no {path}"
        for word in words:
            if word.startswith("tests/"):
                assert (ROOT / word).is_file(), f"{command}: no {word}"


def _recipe_sections() -> list[dict]:
    sections = [yaml.safe_load(block) for block in blocks("yaml")]
    return [s for s in sections if isinstance(s, dict) and set(s) <= {"train", "rewards"}]


def test_the_recipe_sections_validate(plugins):
    sections = _recipe_sections()
    assert {"train", "rewards"} <= {key for s in sections for key in s}
    base = yaml.safe_load((ROOT / "recipes" / "tiny.yaml").read_text())
    for section in sections:
        parse_recipe({**base, **section}, plugins.registry, source="README.md")


def test_the_demo_numbers_are_pasted_from_the_recorded_run():
    """The README's demo table is written by scripts/demo_table.py from docs/demo-results.json, which that
    script records from a `make demo` run: nobody types the numbers."""
    import runpy

    script = runpy.run_path(str(ROOT / "scripts" / "demo_table.py"))
    assert script["main"](["--check"]) == 0
    results = json.loads((ROOT / "docs" / "demo-results.json").read_text())
    assert results["recipe"] == "demo-change-captioner" and results["split"] == "test"
    assert results["versions"]["torch"] == "2.14.1"
