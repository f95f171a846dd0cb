import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from rsforge.core.interfaces import GenerationOptions
from rsforge.core.sample import Turn
from rsforge.decoders.configs import HFCausalLMConfig
from rsforge.decoders.hf_causal_lm import IGNORE, HFCausalLM
from rsforge.decoders.word_level import build_tokenizer, build_vocab

CORPUS = ["a new building was built", "there is no change", "describe the changes"]


def test_config_needs_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one of 'pretrained'"):
        HFCausalLMConfig(name="hf_causal_lm", tokenizer="word_level")


def test_loss_covers_assistant_tokens_only_across_turns(tiny):
    dec = tiny()
    conv = [Turn("user", "describe the changes"), Turn("assistant", "a new building"),
            Turn("user", "describe"), Turn("assistant", "no change")]
    ids, labels = dec.encode_conversation(conv, generation_prompt=False)
    answers = [dec.tokenizer.convert_ids_to_tokens(i) for i, lab in zip(ids, labels, strict=True) if lab != IGNORE]
    assert answers == ["a", "new", "building", "</s>", "no", "change", "</s>"]


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
    out = dec.generate(torch.randn(1, 2, 32), [[Turn("user", "describe the changes")]],
                       GenerationOptions(max_new_tokens=3))
    assert isinstance(out.texts[0], str) and out.token_ids.shape[1] <= 3


def test_word_level_keeps_an_explicit_vocab_size(tiny):
    dec = tiny()
    assert dec.count_tokens("a new building") == 3
    config = dec.config.model_copy(update={"config": {**dec.config.config, "vocab_size": 500}})
    assert HFCausalLM(config).lm.get_input_embeddings().weight.shape[0] == 500
    with pytest.raises(ValueError, match="smaller than the word-level vocabulary"):
        HFCausalLM(dec.config.model_copy(update={"config": {**dec.config.config, "vocab_size": 3}}))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_dtype_builds_the_lm_in_it_and_casts_visual_tokens(tiny, dtype):
    dec = tiny(dtype=dtype).eval()
    assert dec.dtype == getattr(torch, dtype)
    loss = dec(torch.randn(1, 4, 32), [[Turn("user", "describe"), Turn("assistant", "no change")]])
    assert torch.isfinite(loss)
    out = dec.generate(torch.randn(1, 4, 32), [[Turn("user", "describe")]], GenerationOptions(max_new_tokens=2))
    assert isinstance(out.texts[0], str) and out.logprobs.dtype == torch.float32 and out.logprobs.isfinite().all()


def test_image_placeholder_puts_visual_tokens_inside_the_user_turn(tiny):
    dec = tiny()
    conv = [Turn("user", "describe <image> the changes"), Turn("assistant", "a new building")]
    enc = dec.chat.encode(conv, generation_prompt=False)
    at = enc.slots[0]
    assert dec.tokenizer.convert_ids_to_tokens(enc.ids[at - 1 : at + 1]) == ["describe", "the"]
    embeds, _, labels = dec._pack(torch.zeros(1, 4, 32), [conv], generation=False)
    assert (labels[0, at : at + 4] == IGNORE).all() and embeds[0, at : at + 4].abs().sum() == 0
    assert dec.chat.encode([Turn("user", "describe")], generation_prompt=True).slots == [0]  # no <image>: prefix


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
    assert isinstance(dec.generate(torch.randn(1, 2, 32), [conv[:1]], GenerationOptions(max_new_tokens=3)).texts[0],
                      str)
    forced = HFCausalLM(HFCausalLMConfig(name="hf_causal_lm", pretrained=str(tmp_path / "lm"), chat_template="default"))
    assert forced.chat.template is None
