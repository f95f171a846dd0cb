"""The `rsforge` command as a user runs it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rsforge.core.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_plugins_lists_one_part_of_every_kind(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    for heading in ("encoders:", "bridges:", "decoders:", "heads:", "rewards:", "datasets:", "tasks:"):
        assert heading in out
    bridges = out[out.index("bridges:"):out.index("decoders:")]
    for name in ("qformer", "difference_perception", "attention_pooler", "bev_alignment", "mlp_projector",
                 "image_separators"):
        assert f"  {name} " in bridges and "rsforge-bridges" in bridges, name


@pytest.mark.parametrize("recipe", sorted(p.name for p in (ROOT / "recipes").glob("*.yaml")))
def test_every_recipe_passes_recipe_check(recipe, capsys):
    assert main(["recipe", "check", str(ROOT / "recipes" / recipe)]) == 0
    out = capsys.readouterr().out
    assert "assembles on meta" in out and ("encoder" in out or "decoder" in out) and "total" in out


def test_recipe_check_reports_a_bad_recipe_with_its_path(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "recipes" / "tiny.yaml").read_text().replace("hidden: 16", "hidden: sixteen"))
    assert main(["recipe", "check", str(bad)]) == 2
    assert r"heads[0].hidden: Input should be a valid integer" in capsys.readouterr().err


@pytest.mark.parametrize("command", [[], ["plugins"], ["recipe", "check"], ["data", "synth"], ["data", "check"],
                                     ["eval"], ["detect"], ["train"], ["run"], ["serve"]])
def test_every_command_has_help(command):
    result = subprocess.run([ROOT / ".venv/bin/rsforge", *command, "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "usage: rsforge" in result.stdout


def test_data_synth_writes_levir_layouts(tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tmp_path / "d"), "--n", "12", "--seed", "3", "--size", "32"]) == 0
    assert (tmp_path / "d" / "captions.json").is_file()
    assert any((tmp_path / "d" / "train" / "label").iterdir())


def test_recipe_check_names_the_decoder_that_cannot_run_an_scst_stage(tmp_path, capsys):
    """hf_vlm declares no continuation log-probs, so an SCST stage on it fails before any training."""
    raw = (ROOT / "recipes" / "terrasense-tiny.yaml").read_text()
    recipe = tmp_path / "scst-vlm.yaml"
    recipe.write_text(raw.replace("train:\n", "rewards: [{name: cider_d}]\ntrain:\n  stages: [{kind: scst}]\n", 1))
    assert main(["recipe", "check", str(recipe)]) == 2
    assert "an scst stage needs continuation log-probs, which decoder (hf_vlm) does not provide" in \
        capsys.readouterr().err
