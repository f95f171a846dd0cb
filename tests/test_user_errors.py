"""A user's mistakes get one line that names the mistake, before Ray starts or any folder is written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from PIL import Image

from rsforge.core.cli import main

from .conftest import ROOT


def _recipe(tmp_path, **encoder):
    raw = yaml.safe_load((ROOT / "recipes" / "change-mask-tiny.yaml").read_text())
    raw["encoder"].update(encoder)
    raw["data"]["root"] = str(tmp_path / "no-data-yet")  # reading data would synthesise it: it must not happen
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_an_unknown_timm_model_lists_close_matches(tmp_path, capsys):
    assert main(["recipe", "check", str(_recipe(tmp_path, model_name="resnet_18"))]) == 2
    err = _one_error_line(capsys)
    assert "encoder (timm)" in err and "no model 'resnet_18'" in err and "close matches: resnet18" in err


def test_a_wrong_keyword_type_names_the_part(tmp_path, capsys):
    path = _recipe(tmp_path, model_kwargs={"layers": "one", "channels": [16, 32, 64, 128]})
    assert main(["recipe", "check", str(path)]) == 2
    assert _one_error_line(capsys).startswith("rsforge: error: encoder (timm): TypeError")


def test_train_checks_the_parts_before_reading_data_or_writing_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(_recipe(tmp_path, model_name="resnet_18")), "--out", str(out)]) == 2
    assert "close matches" in _one_error_line(capsys)
    assert not out.exists() and not (tmp_path / "no-data-yet").exists()


def test_out_is_checked_first(tmp_path, capsys):
    recipe = _recipe(tmp_path)
    run = tmp_path / "old-run"
    (run / "ray").mkdir(parents=True)
    (run / "recipe.yaml").write_text("name: kept\n")
    assert main(["train", str(recipe), "--out", str(run)]) == 2
    assert f"--resume {run}" in _one_error_line(capsys)
    mine = tmp_path / "my-folder"
    mine.mkdir()
    (mine / "recipe.yaml").write_text("name: mine\n")
    assert main(["train", str(recipe), "--out", str(mine)]) == 2
    assert "not an empty folder" in _one_error_line(capsys)
    assert (mine / "recipe.yaml").read_text() == "name: mine\n" and not (tmp_path / "no-data-yet").exists()


def test_resume_of_a_missing_run_says_so(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "no training run to resume here" in _one_error_line(capsys)


def test_resume_finishes_a_run_the_way_it_was_started(tmp_path, plugins, capsys):
    """`rsforge train --resume` on a folder that `rsforge run` started keeps its test split and baseline."""
    from rsforge.train.cli import _recipe_and_run_dir

    run = tmp_path / "run"
    (run / "ray").mkdir(parents=True)
    (run / "recipe.yaml").write_text(_recipe(tmp_path).read_text())
    (run / "command.json").write_text(json.dumps({"split": "test", "baseline": True}))
    args = type("Args", (), dict(resume=str(run), recipe=None, out=None, split="val", baseline=False, workers=None,
                                 gpu=False, cpus_per_worker=None, plugins=plugins))()
    _recipe_and_run_dir(args)
    assert (args.split, args.baseline) == ("test", True)
    assert "started by `rsforge run`" in capsys.readouterr().out


def test_weights_of_another_shape_name_the_file_the_key_and_both_shapes(tmp_path, plugins, tiny_recipe):
    from rsforge.core.model import RSForgeModel

    saved = RSForgeModel.from_recipe(tiny_recipe, plugins).save_pretrained(tmp_path / "m")
    wider = tiny_recipe.model_copy(update={"heads": [h.model_copy(update={"hidden": 24}) for h in tiny_recipe.heads]})
    (saved / "recipe.yaml").write_text(wider.to_yaml())
    with pytest.raises(ValueError, match=r"model\.safetensors: heads\.0\.\S+ has shape \(.*\) in the file, but the "
                                         r"recipe builds \("):
        RSForgeModel.from_pretrained(saved, plugins=plugins)
    weights = saved / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match=f"{weights}: not a readable safetensors file"):
        RSForgeModel.from_pretrained(saved, plugins=plugins)


def test_corrupt_encoder_weights_name_the_file(tmp_path, capsys):
    weights = tmp_path / "backbone.pth"
    weights.write_bytes(b"not a checkpoint")
    assert main(["recipe", "check", str(_recipe(tmp_path, pretrained=str(weights))), "--device", "cpu"]) == 2
    assert f"{weights}: not a readable weights file" in _one_error_line(capsys)


def test_identical_weights_save_to_identical_bytes(tmp_path):
    """safetensors writes its metadata in hash-map order, which changes from one process to the next."""
    script = ("import sys, torch; from rsforge.core.model import RSForgeModel; from rsforge.core.plugins import "
              "PluginManager; from rsforge.core.recipe import load_recipe; p = PluginManager(); torch.manual_seed(0); "
              "RSForgeModel.from_recipe(load_recipe(sys.argv[1], p.registry), p).save_pretrained(sys.argv[2])")
    recipe = ROOT / "recipes" / "change-mask-tiny.yaml"
    names = ("a", "b", "c", "d")
    for name in names:
        subprocess.run([sys.executable, "-c", script, str(recipe), str(tmp_path / name)], check=True)
    blobs = {(tmp_path / n / "model.safetensors").read_bytes() for n in names}
    assert len(blobs) == 1


def test_detect_refuses_a_lossy_mask_file(tmp_path, tiny_model_dir, capsys):
    assert main(["detect", "--model", str(tiny_model_dir), "--before", "a.png", "--after", "b.png",
                 "--out", str(tmp_path / "mask.jpg")]) == 2
    assert "written losslessly" in _one_error_line(capsys)


def test_data_check_reports_a_grey_and_rgb_pair(tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tmp_path / "d"), "--n", "12", "--seed", "0", "--size", "32"]) == 0
    before = sorted((tmp_path / "d" / "test" / "A").glob("*.png"))[0]
    Image.open(before).convert("L").save(before)
    main(["data", "check", str(tmp_path / "d"), "--format", "levir_cc"])
    out = capsys.readouterr().out
    assert f"{before} is 32x32 L" in out and "is 32x32 RGB" in out
