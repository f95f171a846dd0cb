"""`rsforge convert` of Hugging Face InstructBLIP / BLIP-2 folders, checked against transformers' own classes:
the converted rsforge model gives the reference's logits (1e-4, fp32) and its greedy tokens."""

from __future__ import annotations

import pytest
import torch

from rsforge.core.cli import main
from rsforge.core.model import RSForgeModel
from rsforge.core.sample import Turn

from .hf_reference import BOS, EOS, IMAGE_TOKEN, MEAN, NUM_QUERIES, STD, build_reference, lm_ids, qformer_ids

VARIANTS = [("hf-instructblip", "llama"), ("hf-instructblip", "t5"), ("hf-blip2", "opt"), ("hf-blip2", "t5")]
PROMPTS = ["describe the change", "what is new here"]
ANSWERS = ["a new building", "two houses road"]


def _reference_inputs(fmt: str, text: str, images: torch.Tensor, prompt: str) -> dict[str, torch.Tensor]:
    """What the released processor hands the model: pixel values normalised with its mean/std, the query
    placeholders first, then the prompt (BOS first for a causal LM, EOS last for T5)."""
    pixel_values = (images - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    prompt_ids = [*lm_ids(prompt), EOS] if text == "t5" else [BOS, *lm_ids(prompt)]
    inputs = {"pixel_values": pixel_values, "input_ids": torch.tensor([[IMAGE_TOKEN] * NUM_QUERIES + prompt_ids])}
    if fmt == "hf-instructblip":
        inputs["qformer_input_ids"] = torch.tensor([qformer_ids(prompt)])
    return inputs


@pytest.fixture(scope="module", params=VARIANTS, ids=lambda v: f"{v[0]}-{v[1]}")
def converted(request, tmp_path_factory):
    fmt, text = request.param
    folder = tmp_path_factory.mktemp(f"{fmt}-{text}")
    reference = build_reference(folder / "src", fmt, text)
    assert main(["convert", "--from", fmt, str(folder / "src"), str(folder / "out")]) == 0
    return fmt, text, reference, RSForgeModel.from_pretrained(folder / "out")


def test_logits_match_the_reference(converted):
    fmt, text, reference, model = converted
    torch.manual_seed(1)
    images = torch.rand(len(PROMPTS), 1, 3, 32, 32)
    answers = torch.tensor([lm_ids(a) for a in ANSWERS])
    with torch.no_grad():
        ours = model.continuation_logits(images, [[Turn("user", p)] for p in PROMPTS], answers)
        for i, prompt in enumerate(PROMPTS):
            inputs = _reference_inputs(fmt, text, images[i], prompt)
            if text == "t5":
                start = torch.tensor([[reference.config.text_config.decoder_start_token_id]])
                logits = reference(**inputs, decoder_input_ids=torch.cat([start, answers[i : i + 1, :-1]], 1)).logits
            else:
                prompt_len = inputs["input_ids"].shape[1]
                inputs["input_ids"] = torch.cat([inputs["input_ids"], answers[i : i + 1]], 1)
                logits = reference(**inputs).logits[:, prompt_len - 1 : -1]
            torch.testing.assert_close(ours[i : i + 1], logits, atol=1e-4, rtol=0)


def test_greedy_tokens_match_the_reference(converted):
    fmt, text, reference, model = converted
    torch.manual_seed(2)
    images = torch.rand(len(PROMPTS), 1, 3, 32, 32)
    ours = model.generate(images, [[Turn("user", p)] for p in PROMPTS], max_new_tokens=6)
    for i, prompt in enumerate(PROMPTS):
        inputs = _reference_inputs(fmt, text, images[i], prompt)
        with torch.no_grad():
            out = reference.generate(**inputs, max_new_tokens=6, do_sample=False, num_beams=1)
        expected = out[0, 1:] if text == "t5" else out[0, inputs["input_ids"].shape[1]:]  # T5: drop decoder start
        got = ours.token_ids[i][ours.mask[i]]
        assert got.tolist() == expected[: len(got)].tolist()
        assert len(got) == len(expected) or got[-1].item() == EOS
