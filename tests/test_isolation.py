"""`pip install ./packages/core ./packages/bridges` into an empty virtualenv works on its own and
`rsforge plugins` then lists only the bridges.

To stay fast and offline the venv gets the third-party dependencies by a .pth file pointing at a
folder of symlinks to this environment's site-packages, minus every rsforge distribution and minus
what the kernel must not need (pycocoevalcap, tifffile, rasterio, tqdm), and the two packages are
installed with --no-deps --no-build-isolation.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_FOR_THE_KERNEL = ("pycocoevalcap", "tifffile", "rasterio", "tqdm")


def _third_party_only(target: Path) -> Path:
    target.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        low = entry.name.lower()
        if "rsforge" in low or entry.suffix == ".pth" or low.startswith(NOT_FOR_THE_KERNEL):
            continue
        (target / entry.name).symlink_to(entry)
    return target


def test_core_and_bridges_install_alone(tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    env_site = Path(subprocess.check_output(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    (env_site / "deps.pth").write_text(str(_third_party_only(tmp_path / "deps")) + "\n")

    install = subprocess.run(
        [py, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         str(ROOT / "packages/core"), str(ROOT / "packages/bridges")],
        capture_output=True, text=True,
    )
    assert install.returncode == 0, install.stdout + install.stderr

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "RSFORGE_"))}
    env["RSFORGE_STRICT_PLUGINS"] = "1"
    shown = subprocess.run([env_dir / "bin" / "rsforge", "plugins"], capture_output=True, text=True, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "difference" in shown.stdout and "mlp_projector" in shown.stdout
    for absent in ("encoders:", "decoders:", "heads:", "rewards:", "datasets:", "tasks:", "rsforge-encoders",
                   "rsforge-train"):
        assert absent not in shown.stdout
    assert shown.stderr == ""

    check = subprocess.run(
        [py, "-c", "import rsforge.bridges.difference, importlib.util as u; "
                   "print(u.find_spec('rsforge.encoders') is None)"],
        capture_output=True, text=True, env=env,
    )
    assert check.stdout.strip() == "True", check.stderr
    assert sys.prefix != str(env_dir)


def test_the_kernel_declares_none_of_the_heavy_dependencies():
    declared = tomllib.loads((ROOT / "packages/core/pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split(">")[0].split("=")[0].split("[")[0].strip().lower() for d in declared}
    assert names == {"pluggy", "pydantic", "pyyaml", "torch", "safetensors"}
