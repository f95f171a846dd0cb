"""Local pretrained LMs of four causal families and T5, LoRA through peft, and what `save_pretrained` keeps of them."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

from rsforge.core.batch import Batch
from rsforge.core.model import WEIGHTS_FILE, RSForgeModel
from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import parse_recipe
from rsforge.core.sample import Turn
from rsforge.decoders.word_level import build_tokenizer, build_vocab

CORPUS = ["a new building was built", "there is no change", "describe the changes"]
FAMILIES = {
    "llama": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
              "num_key_value_heads": 2, "max_position_embeddings": 64},
    "qwen2": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
              "num_key_value_heads": 1, "max_position_embeddings": 64},
    "mistral": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                "num_key_value_heads": 1, "max_position_embeddings": 64, "head_dim": 16},
    "gpt2": {"n_embd": 32, "n_layer": 1, "n_head": 2, "n_positions": 64},
    "t5": {"d_model": 32, "d_ff": 64, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 2, "d_kv": 16},
}
SEQ2SEQ = {"t5"}


def _save_lm(tmp_path, family: str) -> str:
    tok = build_tokenizer(build_vocab(CORPUS))
    ids = {"decoder_start_token_id": tok.pad_token_id, "pad_token_id": tok.pad_token_id} if family in SEQ2SEQ \
        else {"bos_token_id": tok.bos_token_id}
    config = AutoConfig.for_model(family, vocab_size=len(tok), eos_token_id=tok.eos_token_id, **ids,
                                  **FAMILIES[family])
    torch.manual_seed(0)
    auto = AutoModelForSeq2SeqLM if family in SEQ2SEQ else AutoModelForCausalLM
    auto.from_config(config).save_pretrained(tmp_path / family)
    tok.save_pretrained(tmp_path / family)
    return str(tmp_path / family)


def _recipe(path: str, family: str = "llama", **decoder) -> dict:
    name = "hf_seq2seq_lm" if family in SEQ2SEQ else "hf_causal_lm"
    return {"name": "lora", "encoder": {"name": "timm", "model_name": "vit_tiny_patch16_224", "image_size": 32,
                                        "model_kwargs": {"patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}},
            "bridges": [{"name": "mlp_projector"}],
            "decoder": {"name": name, "pretrained": path, **decoder}}


def _build(raw: dict) -> RSForgeModel:

    plugins = PluginManager()
    return RSForgeModel.from_recipe(parse_recipe(raw, plugins.registry), plugins)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_lora_saves_only_adapters_and_reloads_exactly(tmp_path, family):
    path = _save_lm(tmp_path, family)
    torch.manual_seed(0)
    model = _build(_recipe(path, family, lora={"r": 4, "alpha": 8}))
    assert model.decoder.weights_from_source
    for name, p in model.decoder.named_parameters():
        assert p.requires_grad == ("lora_" in name), name
        if "lora_B" in name:  # peft starts B at zero; make the adapters matter
            torch.nn.init.normal_(p, std=0.5)
    model.eval()
    images = torch.rand(2, 1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    convs = [[Turn("user", "describe the changes"), Turn("assistant", "a new building")]] * 2
    loss = model(Batch(images, convs)).total
    out = model.generate(images, [c[:1] for c in convs], max_new_tokens=4)

    model.save_pretrained(tmp_path / "saved")
    stored = load_file(str(tmp_path / "saved" / WEIGHTS_FILE))
    decoder_keys = [k for k in stored if k.startswith("decoder.")]
    assert decoder_keys and all("lora_" in k for k in decoder_keys)
    assert any(k.startswith("encoder.") for k in stored) and any(k.startswith("bridges.") for k in stored)

    again = RSForgeModel.from_pretrained(tmp_path / "saved")
    assert torch.equal(again(Batch(images, convs)).total, loss)
    again_out = again.generate(images, [c[:1] for c in convs], max_new_tokens=4)
    assert again_out.texts == out.texts and torch.equal(again_out.token_ids, out.token_ids)
    torch.testing.assert_close(again_out.logprobs, out.logprobs)

    adapter = model.decoder.export_adapter(tmp_path / "adapter")
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 4
    assert (adapter / "adapter_model.safetensors").is_file()


def test_frozen_pretrained_saves_no_decoder_weights_and_full_finetune_saves_them(tmp_path):
    path = _save_lm(tmp_path, "llama")
    frozen = _build(_recipe(path, freeze=True))
    frozen.save_pretrained(tmp_path / "frozen")
    assert not [k for k in load_file(str(tmp_path / "frozen" / WEIGHTS_FILE)) if k.startswith("decoder.")]
    full = _build(_recipe(path))
    full.save_pretrained(tmp_path / "full")
    assert [k for k in load_file(str(tmp_path / "full" / WEIGHTS_FILE)) if k.startswith("decoder.")]


def test_export_adapter_without_lora_is_a_clear_error(tmp_path):
    model = _build(_recipe(_save_lm(tmp_path, "gpt2")))
    with pytest.raises(ValueError, match="no LoRA adapters"):
        model.decoder.export_adapter(tmp_path / "adapter")
