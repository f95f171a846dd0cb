import pytest
import torch

from rsforge.core.configs import DatasetConfig
from rsforge.core.errors import AssemblyError, RecipeError
from rsforge.core.model import RSForgeModel
from rsforge.core.recipe import load_recipe, parse_recipe
from rsforge.core.registry import PartSpec
from rsforge.core.sample import Turn

from .toy_parts import make_input, toy_recipe


def test_unknown_key_is_reported_with_its_recipe_path(toy_plugins):
    raw = toy_recipe(bridges=[{"name": "toy_bridge"}, {"name": "toy_bridge", "num_querys": 3}])
    with pytest.raises(RecipeError, match=r"bridges\[1\]\.num_querys: unknown key"):
        parse_recipe(raw, toy_plugins.registry)


def test_wrong_type_is_reported_with_its_recipe_path(toy_plugins):
    raw = toy_recipe(bridges=[{"name": "toy_bridge"}, {"name": "toy_bridge", "num_queries": "many"}])
    with pytest.raises(RecipeError, match=r"bridges\[1\]\.num_queries: Input should be a valid integer"):
        parse_recipe(raw, toy_plugins.registry)


def test_unknown_part_name_lists_the_known_ones(toy_plugins):
    with pytest.raises(RecipeError, match=r"encoder\.name: unknown encoder 'vit'; known encoders: toy"):
        parse_recipe(toy_recipe(encoder={"name": "vit"}), toy_plugins.registry)


def test_unknown_top_level_key_and_missing_encoder(toy_plugins):
    with pytest.raises(RecipeError, match=r"trian: unknown top-level key"):
        parse_recipe(toy_recipe(trian={}), toy_plugins.registry)
    with pytest.raises(AssemblyError, match=r"encoder: missing; only a decoder that reads images itself"):
        RSForgeModel.from_recipe(parse_recipe({"name": "x"}, toy_plugins.registry), toy_plugins)
    with pytest.raises(RecipeError, match=r"train\.epochs: Input should be greater than or equal to 1"):
        parse_recipe(toy_recipe(train={"epochs": 0}), toy_plugins.registry)


def test_recipe_file_errors_name_the_file(tmp_path, toy_plugins):
    bad = tmp_path / "bad.yaml"
    bad.write_text("encoder: {name: toy\n")
    with pytest.raises(RecipeError, match=r"bad\.yaml: not valid YAML"):
        load_recipe(bad, toy_plugins.registry)
    with pytest.raises(RecipeError, match=r"missing\.yaml: recipe file not found"):
        load_recipe(tmp_path / "missing.yaml", toy_plugins.registry)


def test_assembler_fills_dims_and_names_both_parts_on_mismatch(toy_plugins):
    recipe = parse_recipe(toy_recipe(), toy_plugins.registry)
    model = RSForgeModel.from_recipe(recipe, toy_plugins)
    assert [b.in_dim for b in model.bridges] == [8, 8] and model.bridges[1].out_dim == 6
    assert model.recipe.bridges[0].in_dim == 8  # the resolved recipe is explicit

    raw = toy_recipe(bridges=[{"name": "toy_bridge", "out_dim": 5}, {"name": "toy_bridge", "in_dim": 7}])
    with pytest.raises(AssemblyError, match=r"bridges\[1\] \(toy_bridge\) expects in_dim=7, but "
                                            r"bridges\[0\] \(toy_bridge\) outputs 5"):
        RSForgeModel.from_recipe(parse_recipe(raw, toy_plugins.registry), toy_plugins)


def test_meta_assembly_allocates_no_weights(toy_plugins):
    model = RSForgeModel.from_recipe(parse_recipe(toy_recipe(), toy_plugins.registry), toy_plugins, device="meta")
    assert all(p.is_meta for p in model.parameters())
    assert sum(r[2] for r in model.parameter_counts()) == sum(p.numel() for p in model.parameters())


def test_save_and_reload_is_bit_exact(tmp_path, toy_plugins):
    torch.manual_seed(0)
    model = RSForgeModel.from_recipe(parse_recipe(toy_recipe(), toy_plugins.registry), toy_plugins).eval()
    model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.safetensors", "recipe.yaml"]
    torch.manual_seed(1)  # a different init, which the loaded weights must overwrite
    again = RSForgeModel.from_pretrained(tmp_path / "m", plugins=toy_plugins)
    x = make_input()
    prompts = [[Turn("user", "what changed")]] * len(x)
    assert torch.equal(model.decoder_input(x, prompts), again.decoder_input(x, prompts))


def test_failed_save_leaves_the_previous_copy_whole(tmp_path, toy_plugins, monkeypatch):
    model = RSForgeModel.from_recipe(parse_recipe(toy_recipe(), toy_plugins.registry), toy_plugins)
    model.save_pretrained(tmp_path / "m")
    before = (tmp_path / "m" / "model.safetensors").read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("rsforge.core.model.save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temp directory left behind


def test_pickled_weights_are_refused(tmp_path, toy_plugins):
    model = RSForgeModel.from_recipe(parse_recipe(toy_recipe(), toy_plugins.registry), toy_plugins)
    model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "m" / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"refusing to load pickled weights \['pytorch_model.bin'\]"):
        RSForgeModel.from_pretrained(tmp_path / "m", plugins=toy_plugins)


def test_weights_that_do_not_fit_the_recipe_are_refused(tmp_path, toy_plugins):
    model = RSForgeModel.from_recipe(parse_recipe(toy_recipe(), toy_plugins.registry), toy_plugins)
    model.save_pretrained(tmp_path / "m")
    recipe = (tmp_path / "m" / "recipe.yaml").read_text().replace("out_dim: 6", "out_dim: 7")
    (tmp_path / "m" / "recipe.yaml").write_text(recipe)
    with pytest.raises(ValueError, match=r"model\.safetensors: bridges\.1\.proj\.(bias|weight) has shape \(6.*\) in "
                                         r"the file, but the recipe builds \(7"):
        RSForgeModel.from_pretrained(tmp_path / "m", plugins=toy_plugins)


def test_wrong_image_shape_is_a_clear_error(toy_plugins):
    model = RSForgeModel.from_recipe(parse_recipe(toy_recipe(), toy_plugins.registry), toy_plugins)
    with pytest.raises(ValueError, match=r"images must be \(B, 1, 3, 16, 16\), got \(2, 3, 16, 16\)"):
        model.encode(torch.rand(2, 3, 16, 16))


def test_weights_from_source_are_not_saved_and_come_back_from_the_source(tmp_path, toy_plugins):
    from safetensors.torch import load_file

    raw = toy_recipe(bridges=[{"name": "toy_bridge", "frozen_source_seed": 7}])
    torch.manual_seed(0)
    model = RSForgeModel.from_recipe(parse_recipe(raw, toy_plugins.registry), toy_plugins).eval()
    model.save_pretrained(tmp_path / "m")
    saved = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert "bridges.0.base.weight" not in saved  # frozen, from the source
    assert "bridges.0.base.bias" not in saved
    assert "bridges.0.proj.weight" in saved  # trainable: saved
    again = RSForgeModel.from_pretrained(tmp_path / "m", plugins=toy_plugins)
    assert torch.equal(again.bridges[0].base.weight, model.bridges[0].base.weight)


def test_tied_weights_are_stored_once_and_reload_tied(tmp_path, toy_plugins):
    from safetensors.torch import load_file

    raw = toy_recipe(bridges=[{"name": "toy_bridge", "tie": True}])
    model = RSForgeModel.from_recipe(parse_recipe(raw, toy_plugins.registry), toy_plugins)
    model.save_pretrained(tmp_path / "m")
    saved = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert ("bridges.0.proj.weight" in saved) != ("bridges.0.tied.weight" in saved)
    again = RSForgeModel.from_pretrained(tmp_path / "m", plugins=toy_plugins)
    assert torch.equal(again.bridges[0].tied.weight, model.bridges[0].proj.weight)
    assert again.bridges[0].tied.weight is again.bridges[0].proj.weight


def test_data_takes_one_dataset_or_a_list_and_prompts_override(toy_plugins):
    toy_plugins.registry.add(PartSpec("dataset", "toyset", "toy:Reader", DatasetConfig, "toy-dist"))
    one = parse_recipe(toy_recipe(data={"name": "toyset"}), toy_plugins.registry)
    many = parse_recipe(toy_recipe(data=[{"name": "toyset"}, {"name": "toyset", "weight": 2}],
                                   prompts={"vqa": "answer briefly"}), toy_plugins.registry)
    assert len(one.data) == 1 and [d.weight for d in many.data] == [1.0, 2.0]
    assert many.prompts == {"vqa": "answer briefly"} and "prompts" in many.to_dict()
    with pytest.raises(RecipeError, match=r"data\[1\]\.weight: Input should be greater than 0"):
        parse_recipe(toy_recipe(data=[{"name": "toyset"}, {"name": "toyset", "weight": 0}]), toy_plugins.registry)
    with pytest.raises(RecipeError, match="prompts: expected a mapping"):
        parse_recipe(toy_recipe(prompts=["x"]), toy_plugins.registry)


def test_stages_the_parts_cannot_run_are_refused_at_assembly(toy_plugins):
    scst = toy_recipe(train={"stages": [{"kind": "scst"}]})
    with pytest.raises(AssemblyError, match="an scst stage samples answers, but the recipe has no decoder"):
        RSForgeModel.from_recipe(parse_recipe(scst, toy_plugins.registry), toy_plugins, device="meta")
    mask = toy_recipe(train={"stages": [{"kind": "sft"}, {"kind": "mask"}]})
    with pytest.raises(AssemblyError, match="a mask stage needs a mask head"):
        RSForgeModel.from_recipe(parse_recipe(mask, toy_plugins.registry), toy_plugins, device="meta")
