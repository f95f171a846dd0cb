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


def test_word_level_keeps_an_explicit_vocab_size():
    dec = _tiny()
    config = dec.config.model_copy(update={"config": {**dec.config.config, "vocab_size": 500}})
    assert HFCausalLM(config).lm.get_input_embeddings().weight.shape[0] == 500
    with pytest.raises(ValueError, match="smaller than the word-level vocabulary"):
        HFCausalLM(dec.config.model_copy(update={"config": {**dec.config.config, "vocab_size": 3}}))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_dtype_builds_the_lm_in_it_and_casts_visual_tokens(dtype):
    dec = _tiny(dtype=dtype).eval()
    assert dec.dtype == getattr(torch, dtype)
    loss = dec(torch.randn(1, 4, 32), [[Turn("user", "describe"), Turn("assistant", "no change")]])
    assert torch.isfinite(loss)
    assert isinstance(dec.generate(torch.randn(1, 4, 32), [[Turn("user", "describe")]], max_new_tokens=2)[0], str)


def test_image_placeholder_puts_visual_tokens_inside_the_user_turn():
    dec = _tiny()
    conv = [Turn("user", "describe <image> the changes"), Turn("assistant", "a new building")]
    enc = dec.chat.encode(conv, generation_prompt=False)
    at = enc.slots[0]
    assert dec.tokenizer.convert_ids_to_tokens(enc.ids[at - 1 : at + 1]) == ["describe", "the"]
    embeds, _, labels = dec._pack(torch.zeros(1, 4, 32), [conv], generation=False)
    assert (labels[0, at : at + 4] == IGNORE).all() and embeds[0, at : at + 4].abs().sum() == 0
    assert dec.chat.encode([Turn("user", "describe")], generation_prompt=True).slots == [0]  # no <image>: prefix


def test_stop_strings_cut_the_text_and_end_the_row():
    dec = _tiny().eval()
    visual = torch.randn(2, 4, 32, generator=torch.Generator().manual_seed(0))
    convs = [[Turn("user", "describe")], [Turn("user", "a new building")]]
    full = dec.generate(visual, convs, max_new_tokens=8, return_details=True)
    word = full.texts[0].split()[1]
    cut = dec.generate(visual, convs, max_new_tokens=8, stop=[word], return_details=True)
    assert cut.texts[0] == full.texts[0][: full.texts[0].find(word)].strip()
    assert cut.mask[0].sum() < full.mask[0].sum()


def test_sampling_several_rollouts_returns_ids_and_logprobs_that_match_a_rescoring():
    dec = _tiny().eval()
    visual = torch.randn(2, 4, 32, generator=torch.Generator().manual_seed(0))
    convs = [[Turn("user", "describe")], [Turn("user", "a new building")]]
    torch.manual_seed(0)
    out = dec.generate(visual, convs, max_new_tokens=5, temperature=1.0, num_return_sequences=3, return_details=True)
    assert len(out.texts) == 6 and out.token_ids.shape == out.logprobs.shape == out.mask.shape
    assert (out.logprobs[out.mask] <= 0).all() and (out.logprobs[~out.mask] == 0).all()
    logits = dec.continuation_logits(visual.repeat_interleave(3, 0), [c for c in convs for _ in range(3)],
                                     out.token_ids)
    rescored = logits.float().log_softmax(-1).gather(-1, out.token_ids[..., None]).squeeze(-1)
    torch.testing.assert_close(rescored[out.mask], out.logprobs[out.mask], atol=1e-4, rtol=1e-4)


def test_beam_search_is_batched_and_returns_k_per_input():
    dec = _tiny().eval()
    visual = torch.randn(2, 4, 32, generator=torch.Generator().manual_seed(2))
    convs = [[Turn("user", "describe the changes")], [Turn("user", "there is a new building")]]
    batched = dec.generate(visual, convs, max_new_tokens=5, num_beams=3)
    single = [dec.generate(visual[i : i + 1], [c], max_new_tokens=5, num_beams=3)[0] for i, c in enumerate(convs)]
    assert batched == single
    assert len(dec.generate(visual, convs, max_new_tokens=5, num_beams=3, num_return_sequences=2)) == 4
    with pytest.raises(ValueError, match="need sampling"):
        dec.generate(visual, convs, num_return_sequences=2)


TEMPLATE = ("{% for m in messages %}{{ m['role'] }} : {{ m['content'] }}{% if m['role'] == 'assistant' %} </s>"
            "{% endif %} {% endfor %}{% if add_generation_prompt %}assistant :{% endif %}")


def test_chat_template_multi_turn_labels_and_image_position(tmp_path):
    tok = build_tokenizer(build_vocab(CORPUS))
    tok.chat_template = TEMPLATE
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                                      eos_token_id=tok.eos_token_id))
    lm.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    dec = HFCausalLM(HFCausalLMConfig(name="hf_causal_lm", pretrained=str(tmp_path / "lm")))
    assert dec.chat.template == TEMPLATE
    conv = [Turn("user", "describe <image> the changes"), Turn("assistant", "a new building"),
            Turn("user", "describe"), Turn("assistant", "no change")]
    enc = dec.chat.encode(conv, generation_prompt=False)
    tokens = dec.tokenizer.convert_ids_to_tokens(enc.ids)
    assert [t for t, lab in zip(tokens, enc.labels, strict=True) if lab != IGNORE] == \
        ["a", "new", "building", "</s>", "no", "change", "</s>"]
    assert tokens[enc.slots[0] - 1 : enc.slots[0] + 1] == ["describe", "the"]
    prompt = dec.chat.encode(conv[:1], generation_prompt=True)
    assert enc.ids[: len(prompt.ids)] == prompt.ids  # training and generation tokenize the prompt alike
    assert dec.tokenizer.convert_ids_to_tokens(prompt.ids[-2:]) == ["assistant", ":"]
    assert isinstance(dec.generate(torch.randn(1, 2, 32), [conv[:1]], max_new_tokens=3)[0], str)
    forced = HFCausalLM(HFCausalLMConfig(name="hf_causal_lm", pretrained=str(tmp_path / "lm"), chat_template="default"))
    assert forced.chat.template is None
