"""HFSeq2SeqLM (T5 through `transformers`' seq2seq classes) against `transformers` itself: the encoder
input built by hand from the tokenizer (visual tokens, then the prompt's ids and eos), the loss, greedy,
sampled and beam decoding, continuation logits, LoRA and a local pretrained directory (a LoRA T5 saved and
reloaded: test_pretrained_lora.py)."""

import json

import pytest
import torch
from transformers import T5Config, T5ForConditionalGeneration

from rsforge.core.interfaces import GenerationOptions
from rsforge.core.sample import Turn
from rsforge.decoders import common
from rsforge.decoders.configs import HFSeq2SeqLMConfig
from rsforge.decoders.hf_seq2seq_lm import HFSeq2SeqLM
from rsforge.decoders.word_level import build_tokenizer, build_vocab

CORPUS = ["a new building was built", "there is no change", "describe the changes"]
T5 = {"model_type": "t5", "d_model": 32, "d_ff": 64, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 2,
      "d_kv": 16}
PROMPTS = ["describe the changes", "describe", "there is a new building describe the changes"]
N_VIS = 4


def build(**extra) -> HFSeq2SeqLM:
    """A random tiny T5 with wider weights than T5's init, whose greedy answers end at eos at once: this
    one's answers run to different lengths, some ending at eos and some at the length limit."""
    config = HFSeq2SeqLMConfig(name="hf_seq2seq_lm", tokenizer="word_level", config=dict(T5), **extra)
    torch.manual_seed(5)
    dec = HFSeq2SeqLM(config.prepare(CORPUS))
    with torch.no_grad():
        for name, p in dec.lm.named_parameters():
            if p.dim() == 2 and "lora_" not in name:
                p.normal_(0, 0.3)
    return dec


def visual_for(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, N_VIS, 32, generator=torch.Generator().manual_seed(seed))


def reference_inputs(lm, tokenizer, visual: torch.Tensor, texts: list[str]) -> dict[str, torch.Tensor]:
    """InstructBLIP-FlanT5's encoder input: visual tokens, then the text's ids and eos; padded right."""
    ids = [tokenizer(t)["input_ids"] + [tokenizer.eos_token_id] for t in texts]
    width = max(map(len, ids))
    embed = lm.get_input_embeddings()
    rows = [torch.cat([visual[i], embed(torch.tensor(row + [tokenizer.pad_token_id] * (width - len(row))))])
            for i, row in enumerate(ids)]
    mask = torch.tensor([[1] * (N_VIS + len(row)) + [0] * (width - len(row)) for row in ids])
    return {"inputs_embeds": torch.stack(rows), "attention_mask": mask}


def reference_labels(tokenizer, answers: list[str]) -> torch.Tensor:
    ids = [tokenizer(a)["input_ids"] + [tokenizer.eos_token_id] for a in answers]
    width = max(map(len, ids))
    return torch.tensor([row + [-100] * (width - len(row)) for row in ids])


def users(texts: list[str]) -> list[list[Turn]]:
    return [[Turn("user", t)] for t in texts]


def test_loss_equals_t5_on_visual_tokens_then_the_prompt():
    dec = build().eval()
    assert isinstance(dec.lm, T5ForConditionalGeneration) and dec.hidden_size == 32 and dec.max_context == 512
    assert dec.lm.config.decoder_start_token_id == dec.pad_id == dec.tokenizer.pad_token_id
    answers = ["a new building was built", "no change", "a building"]
    visual = visual_for(3)
    convs = [[Turn("user", p), Turn("assistant", a)] for p, a in zip(PROMPTS, answers, strict=True)]
    loss = dec(visual, convs)
    labels = reference_labels(dec.tokenizer, answers)
    with torch.no_grad():
        ref = dec.lm(**reference_inputs(dec.lm, dec.tokenizer, visual, PROMPTS), labels=labels)
    torch.testing.assert_close(loss, ref.loss)
    # By hand: the mean over every target token and its eos, the decoder reading the start token first.
    logp = ref.logits.log_softmax(-1)
    kept = labels != -100
    nll = -logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0][kept]
    torch.testing.assert_close(loss, nll.mean())


def test_multi_turn_and_image_placeholder_encoder_text():
    dec = build().eval()
    tokens = dec.tokenizer.convert_ids_to_tokens
    conv = [Turn("user", "describe the changes"), Turn("assistant", "a new building"), Turn("user", "describe")]
    ids, at = dec.encode_prompt(conv)
    assert tokens(ids) == ["user", ":", "describe", "the", "changes", "assistant", ":", "a", "new", "building",
                           "user", ":", "describe", "</s>"]
    assert at == 0
    ids, at = dec.encode_prompt([Turn("user", "describe <image> the changes")])
    assert tokens(ids) == ["describe", "the", "changes", "</s>"] and at == 1
    # Multi-turn training: the earlier answer is encoder text, the last one the target.
    visual = visual_for(1)
    loss = dec(visual, [[*conv, Turn("assistant", "no change")]])
    inputs = reference_inputs(dec.lm, dec.tokenizer, visual, ["user : describe the changes assistant : a new building "
                                                              "user : describe"])
    ref = dec.lm(**inputs, labels=reference_labels(dec.tokenizer, ["no change"])).loss
    torch.testing.assert_close(loss, ref)
    with pytest.raises(ValueError, match="must end with a user turn"):
        dec.generate(visual, [[*conv, Turn("assistant", "no")]], GenerationOptions())


def test_greedy_equals_transformers_generate_with_the_reference_logprobs():
    dec = build().eval()
    visual = visual_for(3)
    out = dec.generate(visual, users(PROMPTS), GenerationOptions(max_new_tokens=6))
    inputs = reference_inputs(dec.lm, dec.tokenizer, visual, PROMPTS)
    with torch.no_grad():
        hf = dec.lm.generate(**inputs, do_sample=False, max_new_tokens=6, eos_token_id=dec.stop_ids,
                             pad_token_id=dec.pad_id)
        assert (hf[:, 0] == dec.lm.config.decoder_start_token_id).all()
        assert torch.equal(out.token_ids, hf[:, 1:])
        logits = dec.lm(**inputs, decoder_input_ids=hf[:, :-1]).logits
    expected = logits.log_softmax(-1).gather(-1, hf[:, 1:, None])[..., 0]
    torch.testing.assert_close(out.logprobs[out.mask], expected[out.mask])
    assert (out.logprobs[~out.mask] == 0).all() and (out.token_ids[~out.mask] == dec.pad_id).all()
    assert out.texts == [t.strip() for t in dec.tokenizer.batch_decode(hf[:, 1:], skip_special_tokens=True)]
    for i, prompt in enumerate(PROMPTS):  # right padding of the encoder changes nothing
        single = dec.generate(visual[i : i + 1], users([prompt]), GenerationOptions(max_new_tokens=6))
        assert single.token_ids[0][single.mask[0]].tolist() == out.token_ids[i][out.mask[i]].tolist()


def test_sampling_k_rollouts_is_reproducible_with_logprobs_of_the_warped_distribution():
    dec = build().eval()
    visual = visual_for(2)
    options = GenerationOptions(max_new_tokens=5, temperature=0.7, num_return_sequences=3)
    torch.manual_seed(3)
    out = dec.generate(visual, users(PROMPTS[:2]), options)
    torch.manual_seed(3)
    again = dec.generate(visual, users(PROMPTS[:2]), options)
    assert len(out.texts) == 6 and out.token_ids.shape[0] == 6 and torch.equal(out.token_ids, again.token_ids)
    assert out.logprobs[out.mask].isfinite().all() and (out.logprobs[out.mask] <= 0).all()
    inputs = reference_inputs(dec.lm, dec.tokenizer, visual, PROMPTS[:2])
    repeated = {k: v.repeat_interleave(3, 0) for k, v in inputs.items()}
    start = torch.full((6, 1), dec.lm.config.decoder_start_token_id)
    with torch.no_grad():
        logits = dec.lm(**repeated, decoder_input_ids=torch.cat([start, out.token_ids[:, :-1]], 1)).logits
    expected = (logits / 0.7).log_softmax(-1).gather(-1, out.token_ids[..., None])[..., 0]
    torch.testing.assert_close(out.logprobs[out.mask], expected[out.mask])


def test_beams_streaming_and_stop_strings_follow_the_decoder_side():
    dec = build().eval()
    visual = visual_for(2)
    inputs = reference_inputs(dec.lm, dec.tokenizer, visual, PROMPTS[:2])
    out = dec.generate(visual, users(PROMPTS[:2]), GenerationOptions(max_new_tokens=5, num_beams=3,
                                                                      num_return_sequences=2))
    with torch.no_grad():
        hf = dec.lm.generate(**inputs, do_sample=False, num_beams=3, num_return_sequences=2, max_new_tokens=5,
                             eos_token_id=dec.stop_ids, pad_token_id=dec.pad_id)
    assert torch.equal(out.token_ids, hf[:, 1:].masked_fill(~out.mask, dec.pad_id))
    streamed = []
    greedy = dec.generate(visual, users(PROMPTS[:2]), GenerationOptions(max_new_tokens=5),
                          lambda tokens, alive: streamed.append(tokens.clone()))
    assert torch.equal(torch.stack(streamed, 1).masked_fill(~greedy.mask, dec.pad_id), greedy.token_ids)
    word = greedy.texts[0].split()[0]  # a stop string ends the row and cuts its text
    cut = dec.generate(visual, users(PROMPTS[:2]), GenerationOptions(max_new_tokens=5, stop=(word,)))
    assert cut.finish_reasons[0] == "stop" and word not in cut.texts[0] and cut.mask[0].sum() == 1


def test_continuation_logits_equal_t5_logits_with_gradient_to_the_visual_tokens():
    dec = build().eval()
    visual = visual_for(3).requires_grad_()
    token_ids = torch.randint(4, len(dec.tokenizer), (3, 5), generator=torch.Generator().manual_seed(1))
    logits = dec.continuation_logits(visual, users(PROMPTS), token_ids)
    assert logits.shape == (3, 5, len(dec.tokenizer))
    start = torch.full((3, 1), dec.lm.config.decoder_start_token_id)
    with torch.no_grad():
        ref = dec.lm(**reference_inputs(dec.lm, dec.tokenizer, visual.detach(), PROMPTS),
                     decoder_input_ids=torch.cat([start, token_ids[:, :-1]], 1)).logits
    torch.testing.assert_close(logits, ref, atol=1e-5, rtol=1e-5)
    logits.log_softmax(-1).gather(-1, token_ids[..., None]).sum().backward()
    assert visual.grad is not None and visual.grad.abs().sum() > 0


def test_lora_trains_only_adapters_and_exports_a_seq2seq_adapter(tmp_path):
    dec = build(lora={"r": 4, "alpha": 8})
    names = [n for n, p in dec.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    loss = dec(visual_for(1), [[Turn("user", "describe"), Turn("assistant", "no change")]])
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in dec.named_parameters() if "lora_B" in n)
    adapter = common.export_adapter(dec.lm, tmp_path / "adapter")
    saved = json.loads((adapter / "adapter_config.json").read_text())
    assert saved["r"] == 4 and saved["task_type"] == "SEQ_2_SEQ_LM"
    assert (adapter / "adapter_model.safetensors").is_file()


def save_t5(directory, max_length: int | None = None):
    """A tiny T5 and its word-level tokenizer, saved as `save_pretrained` saves them."""
    tok = build_tokenizer(build_vocab(CORPUS))
    if max_length is not None:
        tok.model_max_length = max_length
    torch.manual_seed(0)
    lm = T5ForConditionalGeneration(T5Config(
        vocab_size=len(tok), d_model=32, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2, d_kv=16,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id))
    lm.save_pretrained(directory)
    tok.save_pretrained(directory)
    return lm, tok


def test_loads_a_local_pretrained_t5_and_tokenizer(tmp_path):
    lm, tok = save_t5(tmp_path / "t5", max_length=12)
    dec = HFSeq2SeqLM(HFSeq2SeqLMConfig(name="hf_seq2seq_lm", pretrained=str(tmp_path / "t5"), freeze=True)).eval()
    assert dec.max_context == 12 and dec.weights_from_source
    assert torch.equal(dec.lm.get_input_embeddings().weight, lm.get_input_embeddings().weight)
    assert not any(p.requires_grad for p in dec.parameters())
    visual = visual_for(1)
    out = dec.generate(visual, users(["describe the changes"]), GenerationOptions(max_new_tokens=3))
    with torch.no_grad():
        hf = lm.eval().generate(**reference_inputs(lm, tok, visual, ["describe the changes"]), do_sample=False,
                                max_new_tokens=3, eos_token_id=dec.stop_ids, pad_token_id=dec.pad_id)
    assert torch.equal(out.token_ids, hf[:, 1:])
    with pytest.raises(ValueError, match="exceeds the encoder context of 12"):
        dec.generate(visual, users([PROMPTS[2]]), GenerationOptions(max_new_tokens=3))


def test_untied_output_embeddings_as_flan_t5_has_them():
    tied = build()
    untied = HFSeq2SeqLM(tied.config.model_copy(update={"config": {**T5, "tie_word_embeddings": False}}))
    assert tied.lm.lm_head.weight is tied.lm.shared.weight
    assert untied.lm.lm_head.weight is not untied.lm.shared.weight
    assert sum(p.numel() for p in untied.parameters()) == sum(p.numel() for p in tied.parameters()) + 32 * len(
        tied.tokenizer)
    assert not untied.lm.config.scale_decoder_outputs  # T5 v1.1: no d_model ** -0.5 on the decoder output
