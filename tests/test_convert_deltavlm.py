"""`rsforge convert --from deltavlm` checked against DeltaVLM's own code (tests/fixtures/deltavlm_reference.py: its
CSRM modules and `generate` lines, verbatim, over LAVIS's EVA-ViT / Q-Former / LayerNorm): the converted model's
visual tokens, what Vicuna reads, equal DeltaVLM's `inputs_llm` within 1e-4 (fp32).

The reference runs, in DeltaVLM's `Blip2VicunaInstruct.generate` (model/blip2_vicua.py on its main branch):
    input_bef = self.ln_vision(self.visual_encoder(imageA))
    input_aft = self.ln_vision(self.visual_encoder(imageB))
    input_diff = input_aft - input_bef
    input_bef_context = torch.tanh(self.context1(input_diff) + self.context2(input_bef))
    input_bef_context = self.dropout(input_bef_context)
    input_bef_gate = torch.sigmoid(self.gate1(input_diff) + self.gate2(input_bef))
    input_bef_gate = self.dropout(input_bef_gate)
    input_befs = input_bef_gate * input_bef_context
    (the same for input_aft -> input_afts)
    input_before = torch.cat([input_bef, input_diff, input_befs], 1)     # on (B, C, N) after permute(0, 2, 1)
    input_after = torch.cat([input_aft, input_diff, input_afts], 1)
    image_embedsA = self.context3(input_before)                          # after permuting back to (B, N, 3C)
    image_embedsB = self.context3(input_after)
    image_embeds = torch.cat((image_embedsA, image_embedsB), dim=1)   # [32, 514, 1408]
    query_output = self.Qformer.bert(text_Qformer.input_ids, attention_mask=Qformer_atts, query_embeds=query_tokens,
                                     encoder_hidden_states=image_embeds, encoder_attention_mask=image_atts, ...)
    inputs_llm = self.llm_proj(query_output.last_hidden_state[:,:query_tokens.size(1),:])
with text_Qformer = self.tokenizer(prompt, padding='longest', truncation=True, max_length=self.max_txt_len).
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from rsforge.bridges.configs import DifferencePerceptionConfig
from rsforge.bridges.difference_perception import DifferencePerception
from rsforge.core.cli import main
from rsforge.core.model import RSForgeModel
from rsforge.core.sample import Turn

from .fixtures.deltavlm_reference import EVA_G_DEPTH, released_state_dict, save_deltavlm_pth, tiny_deltavlm
from .fixtures.lavis_reference import randomise, tiny_eva
from .fixtures.tiny_folders import bert_folder, llm_folder

CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
WORDS = ["a", "building", "describe", "the", "change", "what", "is", "new", "here", "road", "how", "many"]
PROMPTS = ["describe the change", "how many new road here"]
LLM = {"model_type": "llama", "hidden_size": 48, "intermediate_size": 64, "num_hidden_layers": 1,
       "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 64}
HEADS = ["--vision-heads", "2", "--qformer-heads", "2"]


def _llm_folder(folder):
    return llm_folder(folder, LLM, WORDS)


def _bert_folder(folder):
    return bert_folder(folder, WORDS)


def _eva_vit_g(reference, path):
    """LAVIS's eva_vit_g.pth as DeltaVLM's create_eva_vit_g loads it: a bare EVA state dict with one block more than
    the 39 it runs (strict=False skips it), and blocks 37/38 as they were before DeltaVLM fine-tuned them."""
    stale = tiny_eva(img_size=28, embed_dim=32, depth=EVA_G_DEPTH + 1, num_heads=2)
    randomise(stale, seed=7)
    state = {k: v.detach().clone() for k, v in reference.visual_encoder.state_dict().items()}
    state.update({k: v.detach().clone() for k, v in stale.state_dict().items() if k.startswith(
        ("blocks.37.", "blocks.38.", f"blocks.{EVA_G_DEPTH}."))})
    torch.save(state, path)
    return path


def _convert(tmp_path):
    bert = _bert_folder(tmp_path / "bert")
    reference = tiny_deltavlm(bert)
    state = released_state_dict(reference)
    assert {k for k in state if k.startswith("visual_encoder.")} == {
        k for k in state if k.startswith(("visual_encoder.blocks.37.", "visual_encoder.blocks.38."))} != set()
    pth = save_deltavlm_pth(state, tmp_path / "checkpoint_best.pth")
    args = ["convert", "--from", "deltavlm", str(pth), str(tmp_path / "out"),
            "--llm", str(_llm_folder(tmp_path / "llm")), "--qformer-tokenizer", str(bert), *HEADS,
            "--vision", str(_eva_vit_g(reference, tmp_path / "eva_vit_g.pth"))]
    assert main(args) == 0
    return reference, RSForgeModel.from_pretrained(tmp_path / "out")


def test_visual_tokens_match_deltavlm(tmp_path):
    reference, model = _convert(tmp_path)
    images = torch.rand(len(PROMPTS), 2, 3, 28, 28, generator=torch.Generator().manual_seed(3))
    conversations = [[Turn("user", p)] for p in PROMPTS]
    with torch.no_grad():
        ours = model.decoder_input(images, conversations)
    # BlipImageEvalProcessor: Resize((224, 224), BICUBIC) (here: already at size), ToTensor, Normalize(CLIP)
    samples = {"image_A": (images[:, 0] - CLIP_MEAN) / CLIP_STD, "image_B": (images[:, 1] - CLIP_MEAN) / CLIP_STD,
               "prompt": PROMPTS}
    theirs, _ = reference(samples)
    assert ours.shape == theirs.shape == (len(PROMPTS), 4, LLM["hidden_size"])
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)
    assert model.generate(images, conversations, max_new_tokens=3).token_ids.shape[0] == len(PROMPTS)


def test_recipe_keeps_deltavlm_choices(tmp_path):
    _, model = _convert(tmp_path)
    encoder, (difference, qformer) = model.recipe.encoder, model.recipe.bridges
    assert encoder.keep_prefix_tokens and not encoder.final_norm  # all 257 EVA tokens, no final norm
    assert model.encoder.tower.config.num_hidden_layers == EVA_G_DEPTH  # eva_vit_g.pth's 40th block dropped
    assert difference.name == "difference_perception" and difference.norm_input  # ln_vision before CSRM
    assert qformer.name == "qformer" and not qformer.norm_memory and qformer.instruction_aware
    assert (qformer.max_instruction_tokens, qformer.num_queries) == (128, 4)
    evaluation = model.recipe.eval  # DeltaVLM's evaluate.py decoding
    assert (evaluation.num_beams, evaluation.max_new_tokens, evaluation.repetition_penalty) == (5, 256, 1.5)


def test_without_the_llm_or_vit_it_says_what_to_give(tmp_path, capsys):
    reference = tiny_deltavlm(_bert_folder(tmp_path / "bert"))
    pth = save_deltavlm_pth(released_state_dict(reference), tmp_path / "ckpt.pth")
    assert main(["convert", "--from", "deltavlm", str(pth), str(tmp_path / "out")]) != 0
    assert "Vicuna-7B v1.5 Hugging Face folder with --llm" in capsys.readouterr().err
    llm = _llm_folder(tmp_path / "llm")
    assert main(["convert", "--from", "deltavlm", str(pth), str(tmp_path / "out"), "--llm", str(llm), *HEADS]) != 0
    err = capsys.readouterr().err
    assert "visual_encoder.blocks.{37,38}" in err and "--vision eva_vit_g.pth" in err
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_missing_csrm_names_the_tensor(tmp_path, capsys):
    reference = tiny_deltavlm(_bert_folder(tmp_path / "bert"))
    state = released_state_dict(reference)
    del state["gate2.bias"]
    pth = save_deltavlm_pth(state, tmp_path / "ckpt.pth")
    args = ["convert", "--from", "deltavlm", str(pth), str(tmp_path / "out"),
            "--llm", str(_llm_folder(tmp_path / "llm")), "--vision", str(_eva_vit_g(reference, tmp_path / "eva.pth")),
            *HEADS]
    assert main(args) != 0
    assert "missing 1: gate2.bias" in capsys.readouterr().err


def test_difference_perception_weights_name_what_does_not_fit(tmp_path):
    d = 6
    names = {"ln_vision.weight": (d,), "ln_vision.bias": (d,), "context1.weight": (d, d), "context2.weight": (d, d),
             "context2.bias": (d,), "gate1.weight": (d, d), "gate2.weight": (d, d), "gate2.bias": (d,),
             "context3.weight": (d, 3 * d), "context3.bias": (d,), "Qformer.bert.x": (2,)}
    good = {k: torch.randn(s) for k, s in names.items()}
    save_file(good, str(tmp_path / "good.safetensors"))
    config = {"name": "difference_perception", "in_dim": d, "weights": str(tmp_path / "good.safetensors")}
    bridge = DifferencePerception(DifferencePerceptionConfig(**config))
    torch.testing.assert_close(bridge.fuse.weight, good["context3.weight"])  # context3 -> fuse
    torch.testing.assert_close(bridge.norm.bias, good["ln_vision.bias"])  # ln_vision -> norm
    assert bridge.context_diff.bias is None and bridge.gate_diff.bias is None
    bad = {**good, "context1.weight": torch.randn(d, d + 1), "gate1.bias": torch.randn(d)}
    del bad["context2.bias"]
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError) as info:
        DifferencePerception(DifferencePerceptionConfig(**{**config, "weights": str(tmp_path / "bad.safetensors")}))
    message = str(info.value)
    assert "missing 1: context_feat.bias" in message and "unexpected 1: gate1.bias" in message
    assert "context1.weight: (6, 7) in file, (6, 6) here" in message
