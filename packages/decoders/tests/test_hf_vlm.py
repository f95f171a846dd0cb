"""hf_vlm: a tiny random Qwen2-VL reading 1-2 images itself, directly and inside an RSForgeModel."""

import pytest
import torch
from transformers import AutoModelForImageTextToText

from rsforge.core.data.schema import Turn
from rsforge.core.model import RSForgeModel
from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import parse_recipe
from rsforge.decoders.configs import HFVLMConfig
from rsforge.decoders.hf_vlm import HFVLM

PLUGINS = PluginManager()
EXAMPLE = PLUGINS.registry.parts["decoder"]["hf_vlm"].example


def _tiny(**extra) -> HFVLM:
    torch.manual_seed(0)
    return HFVLM(HFVLMConfig(name="hf_vlm", **{**EXAMPLE, **extra}))


def _images(b: int, t: int) -> torch.Tensor:
    return torch.rand(b, t, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_images_go_where_the_placeholders_are_and_loss_skips_them():
    dec = _tiny()
    conv = [Turn("user", "a <image> new <image> building"), Turn("assistant", "new building")]
    packed = dec._pack(_images(1, 2), [conv], generation=False)
    ids = packed["input_ids"][0].tolist()
    assert ids.count(dec.image_token_id) == 2 * dec.tokens_per_image
    assert packed["pixel_values"].shape[0] == 2 * dec.tokens_per_image * 4  # merge 2 x 2 patches per token
    trained = [dec.tokenizer.convert_ids_to_tokens(i) for i, lab in zip(ids, packed["labels"][0].tolist(),
                                                                       strict=True) if lab != -100]
    assert trained == ["new", "building", "</s>"]
    with pytest.raises(ValueError, match="one per image"):
        dec._pack(_images(1, 2), [[Turn("user", "a <image> building")]], generation=True)


@pytest.mark.parametrize("t", [1, 2])
def test_batched_generation_matches_one_by_one(t):
    dec = _tiny().eval()
    images = _images(2, t)
    convs = [[Turn("user", "a building")], [Turn("user", "new"), Turn("assistant", "a"), Turn("user", "building")]]
    batched = dec.generate(images, convs, max_new_tokens=4)
    assert batched == [dec.generate(images[i : i + 1], [c], max_new_tokens=4)[0] for i, c in enumerate(convs)]
    torch.manual_seed(0)
    assert len(dec.generate(images, convs, max_new_tokens=3, temperature=1.0, num_return_sequences=2)) == 4
    assert len(dec.generate(images, convs, max_new_tokens=3, num_beams=2)) == 2


def test_local_pretrained_vlm_with_lora_round_trips_through_the_model(tmp_path):
    src = _tiny()
    src.vlm.save_pretrained(tmp_path / "vlm")
    src.tokenizer.save_pretrained(tmp_path / "vlm")
    src.processor.save_pretrained(tmp_path / "vlm")
    assert isinstance(AutoModelForImageTextToText.from_pretrained(tmp_path / "vlm"), torch.nn.Module)
    raw = {"name": "terrasense-tiny",  # no encoder: the VLM reads the images itself
           "decoder": {"name": "hf_vlm", "pretrained": str(tmp_path / "vlm"), "image_size": 16, "num_images": 2,
                       "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}}}
    from rsforge.core.assembler import assemble
    from rsforge.core.errors import AssemblyError

    with_encoder = {**raw, "encoder": {"name": "timm", "model_name": "resnet18", "image_size": 16}}
    with pytest.raises(AssemblyError, match=r"decoder \(hf_vlm\) reads the images itself; drop encoder"):
        assemble(parse_recipe(with_encoder, PLUGINS.registry), PLUGINS, device="meta")
    torch.manual_seed(0)
    model = assemble(parse_recipe(raw, PLUGINS.registry), PLUGINS)
    assert model.encoder is None and model.image_size == 16 and model.num_images == 2
    for name, p in model.decoder.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    model.eval()
    images, convs = _images(2, 2), [[Turn("user", "describe"), Turn("assistant", "a new building")]] * 2
    loss = model({"images": images, "conversations": convs})["loss"]
    loss.backward()
    texts = model.generate(images, [c[:1] for c in convs], max_new_tokens=4)
    model.save_pretrained(tmp_path / "saved")
    again = RSForgeModel.from_pretrained(tmp_path / "saved")
    assert torch.equal(again({"images": images, "conversations": convs})["loss"], loss.detach())
    assert again.generate(images, [c[:1] for c in convs], max_new_tokens=4) == texts
    with pytest.raises(ValueError, match=r"images must be \(B, 2, 3, 16, 16\)"):
        model.generate(images[:, :1], convs, max_new_tokens=2)
