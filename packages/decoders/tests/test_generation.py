"""HFCausalLM.generate under the Decoder contract, checked against `transformers`' own `generate` and
against recomputing the whole sequence: greedy, sampling, beams, K rollouts, stop tokens and strings,
finish reasons, streaming, the context limit, and a checkpoint's generation defaults kept out."""

import logging
import warnings

import pytest
import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

from rsforge.core.interfaces import Generation, GenerationOptions
from rsforge.core.sample import Turn
from rsforge.decoders.configs import HFCausalLMConfig
from rsforge.decoders.hf_causal_lm import HFCausalLM
from rsforge.decoders.word_level import SPECIALS, build_tokenizer, build_vocab

CORPUS = ["a new building was built", "there is no change", "describe the changes"]
CONVS = [[Turn("user", "describe the changes")], [Turn("user", "describe")],
         [Turn("user", "there is a new building describe the changes")]]


def run(dec, visual, convs, on_tokens=None, **options) -> Generation:
    return dec.generate(visual, convs, GenerationOptions(**options), on_tokens)


def visual_for(n: int, tokens: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, tokens, 32, generator=torch.Generator().manual_seed(seed))


def counted(out: Generation, row: int) -> list[int]:
    return out.token_ids[row][out.mask[row]].tolist()


def recompute_greedy(dec: HFCausalLM, visual, conv, steps: int) -> list[int]:
    """Greedy ids with no cache: the whole sequence is run again for every token, up to a stop id."""
    inputs = dec.generation_inputs(visual, [conv])
    embeds, attn, ids = inputs["inputs_embeds"], inputs["attention_mask"], []
    for _ in range(steps):
        ids.append(int(dec.lm(inputs_embeds=embeds, attention_mask=attn).logits[0, -1].argmax()))
        if ids[-1] in dec.stop_ids:
            break
        embeds = torch.cat([embeds, dec.lm.get_input_embeddings()(torch.tensor([ids[-1:]]))], dim=1)
        attn = torch.cat([attn, attn.new_ones(1, 1)], dim=1)
    return ids


def test_generation_returns_the_contract_fields(tiny):
    dec = tiny().eval()
    assert dec.streams and dec.scores_continuations
    out = run(dec, visual_for(3), CONVS, max_new_tokens=6)
    assert len(out.texts) == len(out.finish_reasons) == 3
    assert out.token_ids.shape == out.mask.shape == out.logprobs.shape and out.token_ids.shape[1] <= 6
    assert out.token_ids.dtype == torch.long and out.mask.dtype == torch.bool and not out.logprobs.requires_grad
    assert (out.token_ids[~out.mask] == dec.pad_id).all() and (out.logprobs[~out.mask] == 0).all()
    assert (out.logprobs[out.mask] < 0).all()


def test_batched_generation_matches_one_by_one_with_left_padding(tiny):
    dec = tiny().eval()
    visual = visual_for(3)
    batched = run(dec, visual, CONVS, max_new_tokens=6)
    for i, conv in enumerate(CONVS):
        single = run(dec, visual[i : i + 1], [conv], max_new_tokens=6)
        assert batched.texts[i] == single.texts[0] and batched.finish_reasons[i] == single.finish_reasons[0]
        assert counted(batched, i) == counted(single, 0)
        torch.testing.assert_close(batched.logprobs[i][batched.mask[i]], single.logprobs[0][single.mask[0]])


def test_greedy_equals_transformers_generate_and_a_full_recompute(tiny):
    dec = tiny().eval()
    visual = visual_for(3)
    out = run(dec, visual, CONVS, max_new_tokens=6)
    with torch.no_grad():
        hf = dec.lm.generate(**dec.generation_inputs(visual, CONVS), do_sample=False, max_new_tokens=6,
                             eos_token_id=dec.stop_ids, pad_token_id=dec.pad_id)
    assert torch.equal(out.token_ids, hf)
    assert out.texts == [t.strip() for t in dec.tokenizer.batch_decode(hf, skip_special_tokens=True)]
    with torch.no_grad():
        assert [recompute_greedy(dec, visual[i : i + 1], c, 6) for i, c in enumerate(CONVS)] == \
            [counted(out, i) for i in range(3)]


@pytest.mark.parametrize("num_beams", [1, 3])
def test_repetition_and_length_penalties_equal_transformers(tiny, num_beams):
    """DeltaVLM and BLIP-2 decode with repetition_penalty 1.5 (and beams): the same as transformers' own."""
    dec = tiny().eval()
    visual = visual_for(3, seed=5)
    options = {"max_new_tokens": 8, "num_beams": num_beams, "repetition_penalty": 1.5, "length_penalty": 0.5}
    out = run(dec, visual, CONVS, **options)
    with torch.no_grad():
        hf = dec.lm.generate(**dec.generation_inputs(visual, CONVS), do_sample=False, eos_token_id=dec.stop_ids,
                             pad_token_id=dec.pad_id, **options)
    for i, row in enumerate(hf.tolist()):
        assert counted(out, i) == row[: len(counted(out, i))]
    plain = run(dec, visual, CONVS, max_new_tokens=8, num_beams=num_beams)
    assert not torch.equal(out.logprobs, plain.logprobs)  # the penalised distribution is what gets scored
    with pytest.raises(ValueError, match="repetition_penalty"):
        GenerationOptions(repetition_penalty=0)


def test_sampling_equals_transformers_with_the_same_seed_and_scores_the_processed_distribution(tiny):
    dec = tiny().eval()
    visual, convs = visual_for(2), CONVS[:2]
    options = {"max_new_tokens": 6, "temperature": 0.7, "top_p": 0.8, "num_return_sequences": 3}
    torch.manual_seed(3)
    out = run(dec, visual, convs, **options)
    torch.manual_seed(3)
    assert torch.equal(run(dec, visual, convs, **options).token_ids, out.token_ids)  # reproducible
    torch.manual_seed(3)
    with torch.no_grad():
        hf = dec.lm.generate(**dec.generation_inputs(visual, convs), do_sample=True, temperature=0.7, top_p=0.8,
                             top_k=0, num_return_sequences=3, max_new_tokens=6, eos_token_id=dec.stop_ids,
                             pad_token_id=dec.pad_id, output_scores=True, return_dict_in_generate=True)
    assert torch.equal(out.token_ids, hf.sequences)
    scored = torch.stack(hf.scores, 1).log_softmax(-1).gather(-1, hf.sequences[..., None]).squeeze(-1)
    torch.testing.assert_close(out.logprobs[out.mask], scored[out.mask])


def test_sampling_draws_only_from_the_top_p_nucleus(tiny):
    dec = tiny().eval()
    visual = visual_for(2)
    torch.manual_seed(0)
    out = run(dec, visual, CONVS[:2], max_new_tokens=6, temperature=1.0, top_p=0.5, num_return_sequences=4)
    with torch.no_grad():
        logits = dec.continuation_logits(visual.repeat_interleave(4, 0), [c for c in CONVS[:2] for _ in range(4)],
                                         out.token_ids)
    probs = logits.float().softmax(-1)
    drawn = probs.gather(-1, out.token_ids[..., None])
    mass_before = (probs * (probs > drawn)).sum(-1)  # tokens more likely than the drawn one
    assert (mass_before[out.mask] < 0.5).all()
    assert (out.logprobs[out.mask] >= drawn.squeeze(-1).log()[out.mask] - 1e-5).all()  # renormalised nucleus


def test_k_rollouts_are_input_major_and_their_logprobs_match_a_rescoring(tiny):
    dec = tiny().eval()
    visual, convs = visual_for(2), [[Turn("user", "describe")], [Turn("user", "a new building")]]
    torch.manual_seed(0)
    out = run(dec, visual, convs, max_new_tokens=5, temperature=1.0, num_return_sequences=3)
    assert len(out.texts) == 6 and out.token_ids.shape == out.logprobs.shape == out.mask.shape
    assert (out.logprobs[out.mask] <= 0).all() and (out.logprobs[~out.mask] == 0).all()
    logits = dec.continuation_logits(visual.repeat_interleave(3, 0), [c for c in convs for _ in range(3)],
                                     out.token_ids)
    rescored = logits.float().log_softmax(-1).gather(-1, out.token_ids[..., None]).squeeze(-1)
    torch.testing.assert_close(rescored[out.mask], out.logprobs[out.mask], atol=1e-4, rtol=1e-4)


def test_stop_strings_cut_the_text_and_end_the_row(tiny):
    dec = tiny().eval()
    visual, convs = visual_for(2), [[Turn("user", "describe")], [Turn("user", "a new building")]]
    full = run(dec, visual, convs, max_new_tokens=8)
    word = full.texts[0].split()[1]
    cut = run(dec, visual, convs, max_new_tokens=8, stop=[word])
    assert cut.texts[0] == full.texts[0][: full.texts[0].find(word)].strip()
    assert cut.mask[0].sum() < full.mask[0].sum() and cut.finish_reasons[0] == "stop"


def _fresh_word(dec, ids: list[int]) -> int:
    """The first position (after the first) of a word that appears nowhere before it."""
    words = dec.tokenizer.convert_ids_to_tokens(ids)
    return next(k for k in range(1, len(words)) if words[k] not in SPECIALS and words[k] not in words[:k])


def test_finish_reasons_length_and_stop(tiny):
    dec = tiny().eval()
    visual, conv = visual_for(1), CONVS[0]
    full = run(dec, visual, [conv], max_new_tokens=8)
    ids = counted(full, 0)
    assert len(ids) == 8 and full.finish_reasons == ["length"]  # ran out of max_new_tokens
    k = _fresh_word(dec, ids)
    word = dec.tokenizer.convert_ids_to_tokens(ids[k])
    prefix = dec.tokenizer.decode(ids[:k], skip_special_tokens=True).strip()
    # A stop string completed by the last allowed token: the row stopped, it did not run out.
    at_last = run(dec, visual, [conv], max_new_tokens=k + 1, stop=[word])
    assert at_last.finish_reasons == ["stop"] and at_last.texts == [prefix] and counted(at_last, 0) == ids[: k + 1]
    assert run(dec, visual, [conv], max_new_tokens=k, stop=[word]).finish_reasons == ["length"]
    # A stop token (say an end-of-turn id): it counts in the mask, not in the text, also as the last token.
    dec.stop_ids = [*dec.stop_ids, ids[k]]
    for limit in (8, k + 1):
        by_token = run(dec, visual, [conv], max_new_tokens=limit)
        assert by_token.finish_reasons == ["stop"] and counted(by_token, 0) == ids[: k + 1]
        assert by_token.texts == [prefix]


def test_generation_stops_at_the_context_and_says_length(tiny):
    dec = tiny().eval()
    conv = [Turn("user", "describe")]
    text_tokens = dec.generation_inputs(visual_for(1), [conv])["attention_mask"].shape[1] - 4
    for room in (1, 2):  # positions left after the prompt
        out = run(dec, visual_for(1, dec.max_context - text_tokens - room, seed=1), [conv], max_new_tokens=10)
        assert out.token_ids.shape[1] == room and out.mask.all() and out.finish_reasons == ["length"]
    with pytest.raises(ValueError, match="exceeds the decoder context of 63"):
        run(dec, visual_for(1, 60), [[Turn("user", "describe the changes")]])


def test_streaming_sees_every_step_and_can_end_rows_early(tiny):
    dec = tiny().eval()
    visual = visual_for(3)
    steps = []
    out = run(dec, visual, CONVS, lambda tokens, alive: steps.append((tokens.clone(), alive.clone())),
              max_new_tokens=6)
    tokens, alive = (torch.stack(s, 1) for s in zip(*steps, strict=True))
    assert torch.equal(alive, out.mask) and torch.equal(tokens, out.token_ids)  # pad in rows already ended
    assert torch.equal(out.token_ids, run(dec, visual, CONVS, max_new_tokens=6).token_ids)  # streaming changes nothing
    assert out.mask[0].sum() > 2
    calls = []

    def end_first_row_after_two(tokens, alive):
        calls.append(alive.clone())
        return torch.tensor([len(calls) >= 2, False, False])

    early = run(dec, visual, CONVS, end_first_row_after_two, max_new_tokens=6)
    assert counted(early, 0) == counted(out, 0)[:2] and early.finish_reasons[0] == "length"
    assert [counted(early, i) for i in (1, 2)] == [counted(out, i) for i in (1, 2)]
    assert early.texts[1:] == out.texts[1:] and not calls[2][0]
    with pytest.raises(ValueError, match="not beam search"):
        run(dec, visual, CONVS, lambda tokens, alive: None, num_beams=2)


def test_beam_search_is_batched_returns_k_per_input_and_equals_transformers(tiny):
    dec = tiny().eval()
    visual = visual_for(2, seed=2)
    convs = [[Turn("user", "describe the changes")], [Turn("user", "there is a new building")]]
    batched = run(dec, visual, convs, max_new_tokens=5, num_beams=3)
    for i, conv in enumerate(convs):
        single = run(dec, visual[i : i + 1], [conv], max_new_tokens=5, num_beams=3)
        assert single.texts[0] == batched.texts[i] and counted(single, 0) == counted(batched, i)
    out = run(dec, visual, convs, max_new_tokens=5, num_beams=3, num_return_sequences=2)
    assert len(out.texts) == len(out.finish_reasons) == 4
    with torch.no_grad():
        hf = dec.lm.generate(**dec.generation_inputs(visual, convs), do_sample=False, num_beams=3,
                             num_return_sequences=2, max_new_tokens=5, eos_token_id=dec.stop_ids,
                             pad_token_id=dec.pad_id, output_scores=True, return_dict_in_generate=True)
    assert torch.equal(out.token_ids[out.mask], hf.sequences[out.mask])
    # The beam's score is its summed log-probability over its length (length_penalty 1).
    torch.testing.assert_close(out.logprobs.sum(1) / out.mask.sum(1), hf.sequences_scores)
    with pytest.raises(ValueError, match="need sampling"):
        GenerationOptions(num_return_sequences=2)


def test_beam_search_ends_beams_at_stop_strings(tiny):
    dec = tiny().eval()
    visual, convs = visual_for(2, seed=2), [[Turn("user", "describe the changes")], [Turn("user", "describe")]]
    full = run(dec, visual, convs, max_new_tokens=6, num_beams=2)
    word = full.texts[0].split()[1]
    cut = run(dec, visual, convs, max_new_tokens=6, num_beams=2, stop=[word])
    assert word not in cut.texts[0].split() and cut.finish_reasons[0] == "stop"
    assert all(word not in t.split() for t in cut.texts)
    # The beam ended with the token that completed the stop string, instead of running on.
    assert dec.tokenizer.convert_ids_to_tokens(counted(cut, 0)[-1]) == word


def test_a_checkpoints_generation_defaults_do_not_leak_in(tmp_path):
    tok = build_tokenizer(build_vocab(CORPUS))
    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                                      eos_token_id=tok.eos_token_id))
    lm.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, do_sample=True, temperature=0.3, top_k=3,
                                            top_p=0.5, repetition_penalty=3.0, no_repeat_ngram_size=1,
                                            suppress_tokens=[5, 6])
    lm.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    dec = HFCausalLM(HFCausalLMConfig(name="hf_causal_lm", pretrained=str(tmp_path / "lm"))).eval()
    assert dec.stop_ids == [tok.eos_token_id]
    visual, convs = visual_for(2), CONVS[:2]
    greedy = run(dec, visual, convs, max_new_tokens=8)
    with torch.no_grad():
        assert [counted(greedy, i) for i in range(2)] == [recompute_greedy(dec, visual[i : i + 1], c, 8)
                                                          for i, c in enumerate(convs)]
    torch.manual_seed(0)
    sampled = run(dec, visual, convs, max_new_tokens=6, temperature=0.7, num_return_sequences=2)
    with torch.no_grad():
        logits = dec.continuation_logits(visual.repeat_interleave(2, 0), [c for c in convs for _ in range(2)],
                                         sampled.token_ids)
    rescored = (logits.float() / 0.7).log_softmax(-1).gather(-1, sampled.token_ids[..., None]).squeeze(-1)
    torch.testing.assert_close(sampled.logprobs[sampled.mask], rescored[sampled.mask], atol=1e-4, rtol=1e-4)


FAMILIES = {
    "llama": {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
              "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 64},
    "qwen2": {"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
              "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64},
    "gpt2": {"model_type": "gpt2", "n_embd": 32, "n_layer": 1, "n_head": 2, "n_positions": 64},
}


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("lora", [None, {"r": 2}])
def test_generation_warns_nothing(family, lora, capfd):
    config = HFCausalLMConfig(name="hf_causal_lm", tokenizer="word_level", config=FAMILIES[family], lora=lora)
    torch.manual_seed(0)
    dec = HFCausalLM(config.prepare(CORPUS)).eval()
    capfd.readouterr()
    logging.Logger.warning_once.cache_clear()  # transformers warns once per process; see every warning here
    visual = visual_for(2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for options in ({}, {"temperature": 0.8, "top_p": 0.9, "num_return_sequences": 2}, {"num_beams": 2},
                        {"stop": ["new"]}):
            out = run(dec, visual, CONVS[:2], max_new_tokens=4, **options)
        dec.continuation_logits(visual, CONVS[:2], out.token_ids)
    assert [str(w.message) for w in caught] == []
    assert capfd.readouterr().err == ""
