"""The worked plugin in examples/rsforge-example-plugin installs like any third-party plugin: after
`pip install`, `rsforge plugins` lists its `token_pooler` bridge, the contract test covers it, and
its recipe assembles and trains forward, as the worked example in docs/plugins.md shows (that block
is what runs here).

It is installed with `pip install --target` into a temp folder put on PYTHONPATH of subprocesses
only, so this environment is never changed; as in test_isolation.py the install is offline
(`--no-deps --no-build-isolation --no-index`: rsforge-core and hatchling come from this environment).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "rsforge-example-plugin"
RECIPE = EXAMPLE / "recipes" / "token-pooler-tiny.yaml"

DOC = ROOT / "docs" / "plugins.md"


def doc_forward() -> str:
    """The worked example's training step in docs/plugins.md (the block marked to run here), so the
    page shows code that runs; it leaves `losses`, `pooler` and `tokens` for the checks below."""
    blocks = re.findall(r"^<!-- test_plugin_example: run -->\n```python\n(.*?)^```", DOC.read_text(), re.M | re.S)
    assert len(blocks) == 1, f"{DOC.name}: expected one block marked '<!-- test_plugin_example: run -->'"
    return blocks[0]


CHECKS = """
print(type(pooler).__module__, tuple(tokens.shape), bool(torch.isfinite(losses.total)),
      pooler.proj.weight.grad is not None, ",".join(sorted(losses.values())))
"""


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict[str, str]:
    site = tmp_path_factory.mktemp("example-plugin-site")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "--target", str(site), str(EXAMPLE)],
        capture_output=True, text=True,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSFORGE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    env["RSFORGE_STRICT_PLUGINS"] = "1"  # a plugin that fails to load is an error, not a warning
    return env


def test_this_environment_is_not_changed(plugin_env):
    assert importlib.util.find_spec("rsforge_example_plugin") is None


def test_rsforge_plugins_lists_the_example(plugin_env):
    shown = subprocess.run([Path(sys.executable).parent / "rsforge", "plugins"], capture_output=True, text=True,
                           env=plugin_env)
    assert shown.returncode == 0 and shown.stderr == "", shown.stderr
    line = next(line for line in shown.stdout.splitlines() if "token_pooler" in line)
    assert "rsforge-example-plugin" in line
    section = shown.stdout.split("bridges:\n")[1].split("\n")
    bridges = [row.split()[0] for row in section[:next(i for i, r in enumerate(section) if not r.startswith(" "))]]
    assert "token_pooler" in bridges and "difference" in bridges  # beside the installed bridges


def test_recipe_using_the_example_assembles_and_runs_forward(plugin_env):
    done = subprocess.run([sys.executable, "-c", doc_forward() + CHECKS], capture_output=True, text=True,
                          env=plugin_env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    # difference fuses the pair (T=1), token_pooler pools 4x4 patch tokens to 2x2, mlp_projector -> hidden 32;
    # the model's Losses hold the decoder's and the change-mask head's terms.
    assert done.stdout.splitlines()[-1].split() == ["rsforge_example_plugin.pooler", "(2,", "1,", "4,", "32)", "True",
                                                    "True", "lm,loss,mask_change_mask"]


def test_contract_test_covers_the_example(plugin_env):
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_part_contracts.py",
         "-k", "bridge-token_pooler"],
        capture_output=True, text=True, env=plugin_env, cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert "1 passed" in done.stdout


def test_rsforge_recipe_check_assembles_the_example_recipe(plugin_env):
    done = subprocess.run([Path(sys.executable).parent / "rsforge", "recipe", "check", str(RECIPE)],
                          capture_output=True, text=True, env=plugin_env)
    assert done.returncode == 0, done.stderr
    assert "assembles on meta" in done.stdout and "token_pooler" in done.stdout
