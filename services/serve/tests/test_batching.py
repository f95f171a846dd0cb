"""Dynamic batching inside a model replica, without Ray: grouping by sampling parameters, one
`generate` call per group, per-request max_tokens, token streaming, and failures kept per request."""

import asyncio
from pathlib import Path

import pytest
import torch
import yaml

from rsforge.core.model import RSForgeModel
from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import parse_recipe
from rsforge.core.sample import Turn
from rsforge.serve.openai_requests import ChatRequest
from rsforge.serve.replica import ModelDeployment, PendingChat

ROOT = Path(__file__).resolve().parents[3]
CORPUS = ["describe the changes between the two images", "a new building was built in the top left",
          "there is no change", "some trees were cut down"]


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    plugins = PluginManager()
    raw = yaml.safe_load((ROOT / "recipes" / "tiny.yaml").read_text())
    raw.pop("data")
    recipe = parse_recipe(raw, plugins.registry).prepared(CORPUS)
    torch.manual_seed(0)
    model_dir = RSForgeModel.from_recipe(recipe, plugins).save_pretrained(tmp_path_factory.mktemp("model") / "tiny")
    # The deployment's own class, constructed directly: batching logic runs the same without Serve.
    return ModelDeployment.func_or_class(str(model_dir), "tiny", 8, 0.0)


def chat(seed: int, text: str = "describe the changes", **options) -> ChatRequest:
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    fields = {"max_tokens": 6, "temperature": 0.0, "top_p": 1.0} | options
    return ChatRequest("tiny", [Turn("user", text)], images, **fields)


def run(replica, requests: list[ChatRequest], stream: bool = False, cancelled: bool = False):
    """Outcomes of one batch, and each request's streamed pieces."""

    async def go():
        loop = asyncio.get_running_loop()
        pendings = [PendingChat(r, loop, asyncio.Queue() if stream else None, cancelled) for r in requests]
        outcomes = await asyncio.to_thread(replica.run_batch, pendings)
        await asyncio.sleep(0)  # let the pieces scheduled from the generation thread land
        pieces = []
        for p in pendings:
            got = []
            while p.queue is not None and not p.queue.empty():
                got.append(p.queue.get_nowait())
            pieces.append(got)
        return outcomes, pieces

    return asyncio.run(go())


def test_a_batch_answers_each_request_as_if_it_ran_alone(replica):
    requests = [chat(0), chat(1, max_tokens=2), chat(2, text="what changed?"), chat(3, max_tokens=9)]
    batched, _ = run(replica, requests)
    alone = [run(replica, [r])[0][0] for r in requests]
    for b, a in zip(batched, alone, strict=True):
        assert b["choices"] == a["choices"] and b["completion_tokens"] == a["completion_tokens"]
    assert [b["batch_size"] for b in batched] == [4] * 4 and alone[0]["batch_size"] == 1
    assert batched[1]["completion_tokens"] <= 2


def test_finish_reasons_and_token_counts_are_the_generations(replica):
    requests = [chat(0, max_tokens=2), chat(1, max_tokens=9)]
    outcomes, _ = run(replica, requests)
    for request, outcome in zip(requests, outcomes, strict=True):
        generation = replica.model.generate(request.images[None], [request.conversation],
                                            max_new_tokens=request.max_tokens)
        assert outcome["choices"] == [(generation.texts[0], generation.finish_reasons[0])]
        assert outcome["completion_tokens"] == int(generation.mask.sum())


def test_beam_search_and_repetition_penalty_answer_as_generate_does(replica):
    """Beam search reports no steps, so requests with other max_tokens batch apart, each to its own length."""
    requests = [chat(0, num_beams=3, n=2, repetition_penalty=1.5, max_tokens=3),
                chat(1, num_beams=3, n=2, repetition_penalty=1.5, max_tokens=7)]
    outcomes, _ = run(replica, requests)
    for request, outcome in zip(requests, outcomes, strict=True):
        generation = replica.model.generate(request.images[None], [request.conversation], num_beams=3,
                                            num_return_sequences=2, repetition_penalty=1.5,
                                            max_new_tokens=request.max_tokens)
        assert outcome["choices"] == list(zip(generation.texts, generation.finish_reasons, strict=True))
        assert outcome["batch_size"] == 1
    assert replica.info()["repetition_penalty"] == replica.model.recipe.eval.repetition_penalty == 1.0


def test_one_generate_call_per_group_of_compatible_sampling(replica, monkeypatch):
    calls = []
    generate = replica.model.generate

    def counting(images, conversations, options, **kwargs):
        calls.append((len(conversations), options.temperature, options.stop))
        return generate(images, conversations, options, **kwargs)

    monkeypatch.setattr(replica.model, "generate", counting)
    requests = [chat(0), chat(1, top_p=0.5), chat(2, temperature=0.7), chat(3, stop=("zz",)), chat(4, max_tokens=3)]
    outcomes, _ = run(replica, requests)
    # Greedy requests share a call whatever their top_p and max_tokens; other sampling or stop strings do not.
    assert sorted(calls) == sorted([(3, 0.0, ()), (1, 0.7, ()), (1, 0.0, ("zz",))])
    assert [o["batch_size"] for o in outcomes] == [3, 3, 1, 1, 3]


def test_streamed_pieces_add_up_to_the_answer(replica):
    requests = [chat(0, max_tokens=8), chat(1, temperature=0.9, n=2, max_tokens=5)]
    outcomes, pieces = run(replica, requests, stream=True)
    for outcome, got in zip(outcomes, pieces, strict=True):
        for index, (text, _) in enumerate(outcome["choices"]):
            assert "".join(t for i, t in got if i == index) == text
    assert len(outcomes[1]["choices"]) == 2


def test_a_prompt_over_the_context_fails_alone(replica):
    outcomes, _ = run(replica, [chat(0), chat(1, text="many words " * 150), chat(2)])
    assert "choices" in outcomes[0] and "choices" in outcomes[2]
    error = outcomes[1]["error"]
    assert error["status"] == 400 and "exceeds the decoder context" in error["message"]


def test_a_cancelled_request_stops_after_one_token(replica):
    (outcome,), _ = run(replica, [chat(0, max_tokens=20)], stream=True, cancelled=True)
    assert outcome["completion_tokens"] == 1


def test_a_decoder_that_does_not_stream_batches_equal_max_tokens_and_streams_whole_answers(replica, monkeypatch):
    calls = []
    generate = replica.model.generate

    def no_streaming(images, conversations, options, *, on_tokens=None):
        assert on_tokens is None  # nothing to call back: the decoder answers whole
        calls.append((len(conversations), options.max_new_tokens))
        return generate(images, conversations, options)

    monkeypatch.setattr(replica.model, "generate", no_streaming)
    monkeypatch.setattr(replica.model.decoder, "streams", False)
    outcomes, pieces = run(replica, [chat(0, max_tokens=3), chat(1, max_tokens=3), chat(2, max_tokens=5)], stream=True)
    # Without per-step control a row cannot end at its own max_tokens, so only equal ones share a call.
    assert sorted(calls) == [(1, 5), (2, 3)]
    for outcome, got in zip(outcomes, pieces, strict=True):
        text = outcome["choices"][0][0]
        assert got == ([(0, text)] if text else [])


def test_any_failure_in_a_batch_reruns_each_request_alone(replica, monkeypatch):
    generate = replica.model.generate

    def choking(images, conversations, options, **kwargs):
        # As a tokenizer does on a lone surrogate: a TypeError, not the ValueError of a prompt too long.
        if any("\ud800" in turn.text for conversation in conversations for turn in conversation):
            raise TypeError("TextEncodeInput must be Union[TextInputSequence, ...] at 0x7f pid 4242")
        return generate(images, conversations, options, **kwargs)

    monkeypatch.setattr(replica.model, "generate", choking)
    outcomes, _ = run(replica, [chat(0), chat(1, text="x \ud800 y"), chat(2)])
    assert "choices" in outcomes[0] and "choices" in outcomes[2]
    error = outcomes[1]["error"]
    assert error["status"] == 500 and "request id req_" in error["message"] and "4242" not in error["message"]


def test_finish_reason_is_length_when_the_context_runs_out_and_stop_on_the_last_allowed_token(replica):
    full, _ = run(replica, [chat(0, max_tokens=12)])
    answer = full[0]["choices"][0][0].split()
    # A stop string that is the k-th word of the answer, with max_tokens ending generation right there.
    k = next(i for i, word in enumerate(answer) if i > 0 and answer.index(word) == i)
    stop = answer[k]
    tokens = next(n for n in range(1, 13) if stop in run(replica, [chat(0, max_tokens=n)])[0][0]["choices"][0][0])
    for stream in (False, True):
        (outcome,), _ = run(replica, [chat(0, max_tokens=tokens, stop=(stop,))], stream=stream)
        assert outcome["choices"][0] == (" ".join(answer[:k]), "stop") and outcome["completion_tokens"] == tokens
    # A prompt that leaves a few positions of the context: the answer ends there, short of max_tokens.
    (outcome,), _ = run(replica, [chat(0, text="there " * 70, max_tokens=64)])
    assert outcome["choices"][0][1] == "length" and outcome["completion_tokens"] < 64
