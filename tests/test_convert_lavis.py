"""`rsforge convert --from lavis` checked against LAVIS's own modules (EVA-ViT, Q-Former, blip2.py's LayerNorm,
loaded from the salesforce-lavis wheel by tests/fixtures/lavis_reference.py): the converted model's visual tokens,
what its LLM reads, equal LAVIS's `llm_proj(Qformer.bert(...))` / `opt_proj(...)` within 1e-4 (fp32)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import BertTokenizer

from rsforge.core.cli import main
from rsforge.core.model import RSForgeModel
from rsforge.core.sample import Turn

from .fixtures.lavis_reference import eva_g_state_dict, save_lavis_pth, tiny_blip2_checkpoint
from .fixtures.tiny_folders import bert_folder, llm_folder

CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
WORDS = ["a", "building", "describe", "the", "change", "what", "is", "new", "here", "road"]
PROMPTS = ["describe the change", "what is new here"]
LLM = {"instructblip": {"model_type": "llama", "hidden_size": 48, "intermediate_size": 64, "num_hidden_layers": 1,
                        "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 64},
       "blip2": {"model_type": "opt", "hidden_size": 48, "ffn_dim": 64, "num_hidden_layers": 1,
                 "num_attention_heads": 2, "word_embed_proj_dim": 48, "max_position_embeddings": 64}}
SIZES = {"vision_heads": 2, "qformer_heads": 2}


def _llm_folder(folder, kind):
    return llm_folder(folder, LLM[kind], WORDS)


def _bert_folder(folder):
    return bert_folder(folder, WORDS)


def _convert(tmp_path, kind, *, trainable_only=False):
    state, reference = tiny_blip2_checkpoint(kind, trainable_only=trainable_only, **SIZES)
    pth = save_lavis_pth(state, tmp_path / f"{kind}.pth")
    args = ["convert", "--from", "lavis", str(pth), str(tmp_path / "out"), "--llm",
            str(_llm_folder(tmp_path / "llm", kind)), "--vision-heads", "2", "--qformer-heads", "2"]
    if kind == "instructblip":
        args += ["--qformer-tokenizer", str(_bert_folder(tmp_path / "bert"))]
    if trainable_only:
        full, _ = tiny_blip2_checkpoint(kind, **SIZES)
        weights = eva_g_state_dict(full)
        # eva_vit_g.pth holds one block more than LAVIS builds (40 for 39): an extra block that must not run.
        weights.update({k.replace("blocks.1.", "blocks.2."): torch.randn_like(v)
                        for k, v in weights.items() if k.startswith("blocks.1.")})
        eva = tmp_path / "eva_vit_g.pth"
        torch.save(weights, eva)  # eva_vit_g.pth is a bare state dict
        args += ["--vision", str(eva), "--vision-depth", "2"]
    assert main(args) == 0
    return reference, RSForgeModel.from_pretrained(tmp_path / "out")


def _reference_tokens(reference, kind, images, tmp_path):
    pixels = (images[:, 0] - CLIP_MEAN) / CLIP_STD  # blip_image_eval: Normalize after ToTensor
    if kind == "blip2":
        return reference(pixels)
    text = BertTokenizer.from_pretrained(tmp_path / "bert")(PROMPTS, padding="longest", return_tensors="pt")
    return reference(pixels, text["input_ids"], text["attention_mask"])


@pytest.mark.parametrize("kind", ["instructblip", "blip2"])
def test_visual_tokens_match_lavis(tmp_path, kind):
    reference, model = _convert(tmp_path, kind)
    images = torch.rand(len(PROMPTS), 1, 3, 28, 28, generator=torch.Generator().manual_seed(3))
    conversations = [[Turn("user", p)] for p in PROMPTS]
    with torch.no_grad():
        ours = model.decoder_input(images, conversations)
    torch.testing.assert_close(ours, _reference_tokens(reference, kind, images, tmp_path), atol=1e-4, rtol=0)
    assert model.generate(images, conversations, max_new_tokens=3).token_ids.shape[0] == len(PROMPTS)


def test_a_checkpoint_without_its_vit_takes_eva_vit_g(tmp_path):
    reference, model = _convert(tmp_path, "instructblip", trainable_only=True)
    images = torch.rand(2, 1, 3, 28, 28, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ours = model.decoder_input(images, [[Turn("user", p)] for p in PROMPTS])
    torch.testing.assert_close(ours, _reference_tokens(reference, "instructblip", images, tmp_path), atol=1e-4, rtol=0)
    tokenizer = json.loads((tmp_path / "out" / "language_model" / "tokenizer_config.json").read_text())
    assert tokenizer["bos_token"] == "</s>"  # blip2_vicuna_instruct.py's Vicuna prompt starts with </s>


def test_without_the_llm_or_vit_it_says_what_to_give(tmp_path, capsys):
    state, _ = tiny_blip2_checkpoint("instructblip", trainable_only=True, **SIZES)
    pth = save_lavis_pth(state, tmp_path / "ckpt.pth")
    assert main(["convert", "--from", "lavis", str(pth), str(tmp_path / "out")]) != 0
    assert "give its Hugging Face folder with --llm" in capsys.readouterr().err
    llm = _llm_folder(tmp_path / "llm", "instructblip")
    heads = ["--vision-heads", "2", "--qformer-heads", "2"]
    assert main(["convert", "--from", "lavis", str(pth), str(tmp_path / "out"), "--llm", str(llm), *heads]) != 0
    assert "--vision eva_vit_g.pth" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_eva_vit_g_alone_becomes_an_hf_vision_tower(tmp_path, capsys):
    """`--from lavis-eva`: the encoder built from OUT gives LAVIS's EVA tokens (all of them, no final norm)."""
    from rsforge.encoders.configs import HFVisionConfig
    from rsforge.encoders.hf_vision import HFVisionEncoder

    full, reference = tiny_blip2_checkpoint("blip2", **SIZES)
    weights = eva_g_state_dict(full)
    weights.update({k.replace("blocks.1.", "blocks.2."): torch.randn_like(v)
                    for k, v in weights.items() if k.startswith("blocks.1.")})  # the 40th block: not run
    torch.save(weights, tmp_path / "eva_vit_g.pth")
    out = tmp_path / "eva"
    assert main(["convert", "--from", "lavis-eva", str(tmp_path / "eva_vit_g.pth"), str(out), "--vision-heads", "2",
                 "--vision-depth", "2"]) == 0
    assert "final_norm: false" in capsys.readouterr().out
    encoder = HFVisionEncoder(HFVisionConfig(name="hf_vision", pretrained=str(out), image_size=28,
                                             keep_prefix_tokens=True, final_norm=False)).eval()
    images = torch.rand(2, 3, 28, 28, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        tokens, _ = encoder(images)  # mean/std from OUT's preprocessor_config.json: CLIP's, as LAVIS
        expected = reference.model.visual_encoder((images - CLIP_MEAN) / CLIP_STD)
    torch.testing.assert_close(tokens, expected, atol=1e-4, rtol=0)
