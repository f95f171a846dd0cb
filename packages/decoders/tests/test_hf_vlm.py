"""hf_vlm: a tiny random Qwen2-VL reading 1-2 images itself, directly and inside an RSForgeModel."""

import pytest
import torch
from transformers import AutoModelForImageTextToText

from rsforge.core.batch import Batch
from rsforge.core.interfaces import GenerationOptions
from rsforge.core.model import RSForgeModel
from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import parse_recipe
from rsforge.core.sample import Turn
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
    batched = dec.generate(images, convs, GenerationOptions(max_new_tokens=4))
    for i, conv in enumerate(convs):
        single = dec.generate(images[i : i + 1], [conv], GenerationOptions(max_new_tokens=4))
        assert single.texts[0] == batched.texts[i] and single.finish_reasons[0] == batched.finish_reasons[i]
        assert torch.equal(single.token_ids[0][single.mask[0]], batched.token_ids[i][batched.mask[i]])
    torch.manual_seed(0)
    sampled = dec.generate(images, convs, GenerationOptions(max_new_tokens=3, temperature=1.0, num_return_sequences=2))
    assert len(sampled.texts) == 4 and sampled.token_ids.shape == sampled.logprobs.shape == (4, 3)
    assert len(dec.generate(images, convs, GenerationOptions(max_new_tokens=3, num_beams=2)).texts) == 2


def test_generation_equals_transformers_generate_and_streams():
    dec = _tiny().eval()
    assert dec.streams and not dec.scores_continuations
    images = _images(2, 2)
    convs = [[Turn("user", "a building")], [Turn("user", "new building")]]
    steps = []
    out = dec.generate(images, convs, GenerationOptions(max_new_tokens=5),
                       lambda tokens, alive: steps.append((tokens.clone(), alive.clone())))
    inputs = dec.generation_inputs(images, convs)
    with torch.no_grad():
        hf = dec.vlm.generate(**inputs, do_sample=False, max_new_tokens=5, eos_token_id=dec.stop_ids,
                              pad_token_id=dec.pad_id, output_scores=True, return_dict_in_generate=True)
    prompt = inputs["input_ids"].shape[1]
    assert torch.equal(out.token_ids, hf.sequences[:, prompt:])
    scored = torch.stack(hf.scores, 1).log_softmax(-1).gather(-1, out.token_ids[..., None]).squeeze(-1)
    torch.testing.assert_close(out.logprobs[out.mask], scored[out.mask])
    tokens, alive = (torch.stack(s, 1) for s in zip(*steps, strict=True))
    assert torch.equal(tokens, out.token_ids) and torch.equal(alive, out.mask)
    assert out.finish_reasons == ["length" if bool(row.all()) else "stop" for row in out.mask]


def test_local_pretrained_vlm_with_lora_round_trips_through_the_model(tmp_path):
    src = _tiny()
    src.vlm.save_pretrained(tmp_path / "vlm")
    src.tokenizer.save_pretrained(tmp_path / "vlm")
    src.processor.save_pretrained(tmp_path / "vlm")
    assert isinstance(AutoModelForImageTextToText.from_pretrained(tmp_path / "vlm"), torch.nn.Module)
    raw = {"name": "terrasense-tiny",  # no encoder: the VLM reads the images itself
           "decoder": {"name": "hf_vlm", "pretrained": str(tmp_path / "vlm"), "image_size": 16, "num_images": 2,
                       "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}}}
    from rsforge.core.errors import AssemblyError

    with_encoder = {**raw, "encoder": {"name": "timm", "model_name": "resnet18", "image_size": 16}}
    with pytest.raises(AssemblyError, match=r"decoder \(hf_vlm\) reads the images itself; drop encoder"):
        RSForgeModel.from_recipe(parse_recipe(with_encoder, PLUGINS.registry), PLUGINS, device="meta")
    torch.manual_seed(0)
    model = RSForgeModel.from_recipe(parse_recipe(raw, PLUGINS.registry), PLUGINS)
    assert model.encoder is None and model.image_size == 16 and model.num_images == 2
    for name, p in model.decoder.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    model.eval()
    images, convs = _images(2, 2), [[Turn("user", "describe"), Turn("assistant", "a new building")]] * 2
    loss = model(Batch(images, convs)).total
    loss.backward()
    out = model.generate(images, [c[:1] for c in convs], max_new_tokens=4)
    model.save_pretrained(tmp_path / "saved")
    again = RSForgeModel.from_pretrained(tmp_path / "saved")
    assert torch.equal(again(Batch(images, convs)).total, loss.detach())
    again_out = again.generate(images, [c[:1] for c in convs], max_new_tokens=4)
    assert again_out.texts == out.texts and torch.equal(again_out.token_ids, out.token_ids)
    with pytest.raises(ValueError, match=r"images must be \(B, 2, 3, 16, 16\)"):
        model.generate(images[:, :1], convs, max_new_tokens=2)
