import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from rsforge.core.data.schema import Turn
from rsforge.decoders.configs import HFCausalLMConfig
from rsforge.decoders.hf_causal_lm import IGNORE, HFCausalLM
from rsforge.decoders.word_level import build_tokenizer, build_vocab

CORPUS = ["a new building was built", "there is no change", "describe the changes"]


def _tiny(**extra) -> HFCausalLM:
    config = HFCausalLMConfig(
        name="hf_causal_lm", tokenizer="word_level",
        config={"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 64},
        **extra,
    ).prepare(CORPUS)
    torch.manual_seed(0)
    return HFCausalLM(config)


def test_config_needs_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one of 'pretrained'"):
        HFCausalLMConfig(name="hf_causal_lm", tokenizer="word_level")


def test_loss_covers_assistant_tokens_only_across_turns():
    dec = _tiny()
    conv = [Turn("user", "describe the changes"), Turn("assistant", "a new building"),
            Turn("user", "describe"), Turn("assistant", "no change")]
    ids, labels = dec.encode_conversation(conv, generation_prompt=False)
    answers = [dec.tokenizer.convert_ids_to_tokens(i) for i, lab in zip(ids, labels, strict=True) if lab != IGNORE]
    assert answers == ["a", "new", "building", "</s>", "no", "change", "</s>"]


def test_batched_generation_matches_one_by_one_with_left_padding():
    dec = _tiny().eval()
    visual = torch.randn(3, 4, 32, generator=torch.Generator().manual_seed(0))
    convs = [[Turn("user", "describe the changes")], [Turn("user", "describe")],
             [Turn("user", "there is a new building describe the changes")]]
    batched = dec.generate(visual, convs, max_new_tokens=6)
    single = [dec.generate(visual[i : i + 1], [c], max_new_tokens=6)[0] for i, c in enumerate(convs)]
    assert batched == single


def test_generation_with_kv_cache_equals_full_recompute():
    dec = _tiny().eval()
    visual = torch.randn(1, 4, 32, generator=torch.Generator().manual_seed(1))
    conv = [Turn("user", "describe the changes")]
    cached = dec.generate(visual, [conv], max_new_tokens=5)[0]
    embeds, attn, _ = dec._pack(visual, [conv], generation=True)
    ids = []
    for _ in range(5):  # greedy, recomputing the whole sequence each step
        logits = dec.lm(inputs_embeds=embeds, attention_mask=attn).logits[:, -1]
        token = int(logits.argmax(-1))
        if token == dec.eos_id:
            break
        ids.append(token)
        embeds = torch.cat([embeds, dec.lm.get_input_embeddings()(torch.tensor([[token]]))], dim=1)
        attn = torch.cat([attn, attn.new_ones(1, 1)], dim=1)
    assert cached == dec.tokenizer.decode(ids, skip_special_tokens=True).strip()


def test_prompt_over_the_context_is_a_clear_error():
    dec = _tiny()
    with pytest.raises(ValueError, match="exceeds the decoder context of 63"):
        dec.generate(torch.randn(1, 60, 32), [[Turn("user", "describe the changes")]])


def test_sampling_respects_top_p():
    dec = _tiny().eval()
    torch.manual_seed(0)
    texts = dec.generate(torch.randn(2, 4, 32), [[Turn("user", "describe")]] * 2, max_new_tokens=4,
                         temperature=1.0, top_p=0.5)
    assert len(texts) == 2


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_loads_a_local_pretrained_model_and_tokenizer(tmp_path, family):
    """The real loading path (`pretrained: <dir>`), exercised on a tiny model saved by the test."""
    tok = build_tokenizer(build_vocab(CORPUS))
    if family == "llama":
        lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                          num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                          max_position_embeddings=64, eos_token_id=tok.eos_token_id))
    else:
        lm = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, n_positions=64,
                                        eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id))
    lm.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    dec = HFCausalLM(HFCausalLMConfig(name="hf_causal_lm", pretrained=str(tmp_path / "lm"), freeze=True))
    assert dec.hidden_size == 32
    assert torch.equal(dec.lm.get_input_embeddings().weight, lm.get_input_embeddings().weight)
    assert not any(p.requires_grad for p in dec.parameters())
    out = dec.generate(torch.randn(1, 2, 32), [[Turn("user", "describe the changes")]], max_new_tokens=3)
    assert isinstance(out[0], str)
