"""The model deployment: one saved model per replica, with dynamic batching, token streaming and masks.

The driver sends a replica only the model directory; the replica rebuilds the model from the recipe
with its own installed plugins (`PluginManager()`), so nothing registered in the driver is assumed
to exist on the worker.

Batching: concurrent chat requests to one replica are collected by `@serve.batch` (up to
`max_batch_size`, waiting at most `batch_wait_s` for more), grouped by compatible sampling
parameters, and each group runs as one batched `RSForgeModel.generate` call. A decoder that
`streams` calls the group's `on_tokens` every step: it hands streamed requests their text as it
grows and ends each row at its own request's `max_tokens`; any other decoder answers whole, so only
requests with equal `max_tokens` share a call and streamed ones get their answer in one piece.

Outcomes are plain dicts (they cross the Ray boundary to the ingress): a chat's `{"choices": [(text,
finish_reason)], "prompt_tokens", "completion_tokens", "batch_size"}`, a mask's `{"scene"}`, or
`{"error": {"status", "message", "param"}}`, which the ingress raises as an `APIError`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import ray
import torch
from ray import serve

from rsforge.core.interfaces import Generation, GenerationOptions
from rsforge.datasets.prompts import serving_prompts
from rsforge.serve.errors import request_id, server_error
from rsforge.serve.masks import DetectRequest
from rsforge.serve.openai_requests import ChatRequest
from rsforge.serve.scenes import SceneError, SceneMask, detect_scene

logger = logging.getLogger("ray.serve")


@dataclass
class PendingChat:
    """A chat request waiting in (or running in) a batch. `queue` receives a streamed request's
    pieces as (choice index, text); `cancelled` is set when its client went away."""

    request: ChatRequest
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue | None = None
    cancelled: bool = False
    emitted: list[str] = field(default_factory=list)


# A short shutdown poll: replicas stop as soon as their requests are done (Serve polls every 2 s by default).
@serve.deployment(max_constructor_retry_count=1, graceful_shutdown_wait_loop_s=0.25)
class ModelDeployment:
    def __init__(self, model_dir: str, name: str, max_batch_size: int = 16, batch_wait_s: float = 0.01) -> None:
        from rsforge.core.model import RSForgeModel
        from rsforge.core.plugins import PluginManager

        # The GPU only when this replica reserved one (`num_gpus`); outside Ray (tests, benches) the CPU.
        use_gpu = torch.cuda.is_available() and ray.is_initialized() and bool(ray.get_gpu_ids())
        self.device = torch.device("cuda" if use_gpu else "cpu")
        self.model = RSForgeModel.from_pretrained(model_dir, plugins=PluginManager(), device=self.device)
        self.name = name
        self.created = int(time.time())
        self.prompts = serving_prompts(self.model.recipe.prompts, self.model.num_images)
        # One model call at a time: concurrent torch calls on one model only fight over the same cores.
        self._model_lock = threading.Lock()
        self._batch.set_max_batch_size(max_batch_size)
        self._batch.set_batch_wait_timeout_s(batch_wait_s)

    @property
    def streams(self) -> bool:
        """Whether the decoder streams token by token (its declared ability)."""
        return self.model.decoder is not None and self.model.decoder.streams

    def info(self) -> dict[str, Any]:
        """What the ingress needs to parse requests for this model, and what the driver prints."""
        return {
            "model": self.name,
            "created": self.created,
            "num_images": self.model.num_images,
            "image_size": self.model.image_size,
            "max_context": self.model.max_context or None,
            "interpolation": self.model.interpolation,
            "chat": self.model.decoder is not None,
            "masks": bool(self.model.mask_heads),
            "streams_tokens": self.streams,
            "prompts": self.prompts,
            "repetition_penalty": self.model.recipe.eval.repetition_penalty,
        }

    # ---- chat -----------------------------------------------------------------------------------

    async def chat(self, request: ChatRequest) -> dict[str, Any]:
        """{"choices": [(text, finish_reason)], "prompt_tokens", "completion_tokens", "batch_size"} or {"error"}."""
        return await self._batch(PendingChat(request, asyncio.get_running_loop()))

    async def chat_stream(self, request: ChatRequest) -> AsyncIterator[dict[str, Any]]:
        """{"delta": (choice index, text)} events as tokens come, then {"final": <as `chat`>}."""
        pending = PendingChat(request, asyncio.get_running_loop(), queue=asyncio.Queue())
        task = asyncio.ensure_future(self._batch(pending))
        # Also when the batch fails as a whole: the loop below must never wait forever.
        task.add_done_callback(lambda _: pending.queue.put_nowait(None))
        try:
            while (delta := await pending.queue.get()) is not None:
                yield {"delta": delta}
            yield {"final": task.result()}
        finally:
            pending.cancelled = True  # the client went away: its rows stop at the next step

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def _batch(self, pendings: list[PendingChat]) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.run_batch, pendings)

    def run_batch(self, pendings: list[PendingChat]) -> list[dict[str, Any]]:
        """One outcome per request: requests with compatible sampling share one `generate` call."""
        streams = self.streams
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, pending in enumerate(pendings):
            key = pending.request.sampling_key()
            # Token by token, each row ends at its own max_tokens; beam search reports no steps, so it groups by it.
            by_step = streams and pending.request.num_beams == 1
            groups[key if by_step else (*key, pending.request.max_tokens)].append(i)
        outcomes: list[dict[str, Any]] = [{}] * len(pendings)
        for indices in groups.values():
            for i, outcome in zip(indices, self._run_group([pendings[i] for i in indices]), strict=True):
                outcomes[i] = outcome
        return outcomes

    def _run_group(self, group: list[PendingChat]) -> list[dict[str, Any]]:
        first = group[0].request
        n = first.n
        rows = [(p, i) for p in group for i in range(n)]  # input-major, as `generate` returns them
        ids: list[list[int]] = [[] for _ in rows]  # each row's tokens so far
        for pending in group:
            # Kept when a failed batch reruns a request alone: what its client was sent stays sent.
            pending.emitted = pending.emitted or [""] * n

        def on_tokens(tokens: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
            ended = []
            for r, (token, live) in enumerate(zip(tokens.tolist(), alive.tolist(), strict=True)):
                pending, choice = rows[r]
                if live:
                    ids[r].append(token)
                    if pending.queue is not None:
                        self._push(pending, choice, self._safe_text(ids[r], pending.request.stop))
                ended.append(pending.cancelled or len(ids[r]) >= pending.request.max_tokens)
            return torch.tensor(ended)

        try:
            options = GenerationOptions(
                max_new_tokens=max(p.request.max_tokens for p in group),
                temperature=first.temperature,
                top_p=first.top_p,
                num_return_sequences=n,
                stop=first.stop,
                num_beams=first.num_beams,
                repetition_penalty=first.repetition_penalty,
            )
            images = torch.stack([p.request.images for p in group]).to(self.device)
            conversations = [p.request.conversation for p in group]
            with self._model_lock:
                stepwise = self.streams and first.num_beams == 1  # beam search reports no steps
                generation = self.model.generate(images, conversations, options,
                                                 on_tokens=on_tokens if stepwise else None)
        except Exception as exc:
            if len(group) > 1:
                # Whatever failed may be one request's doing (a prompt over the context, text a tokenizer
                # chokes on with a TypeError): each reruns alone, so a bad request can only fail itself.
                return [self._run_group([p])[0] for p in group]
            if isinstance(exc, ValueError):
                # The kernel's convention: ValueError means input the model cannot take, the client's to fix.
                return [{"error": {"status": 400, "message": str(exc), "param": "messages"}}]
            # A fault on this side: the details go to the log under an id the client gets; the replica keeps serving.
            rid = request_id()
            logger.exception("generation failed (request id %s)", rid)
            error = server_error(rid)
            return [{"error": {"status": error.status, "message": error.message, "code": error.code}}]
        return self._outcomes(group, generation)

    def _outcomes(self, group: list[PendingChat], generation: Generation) -> list[dict[str, Any]]:
        """Each request's choices and token counts from its rows of `generation`; a streamed request
        gets whatever of its final texts it was not sent yet."""
        n = group[0].request.n
        used = generation.mask.sum(dim=1).tolist()  # tokens each row generated, its stop token included
        outcomes = []
        for j, pending in enumerate(group):
            rows = range(j * n, (j + 1) * n)
            choices = [(generation.texts[r], generation.finish_reasons[r]) for r in rows]
            if pending.queue is not None:
                for choice, (text, _) in enumerate(choices):
                    self._push(pending, choice, text)
            prompt = sum(self.model.count_tokens(turn.text) for turn in pending.request.conversation)
            outcomes.append({"choices": choices, "prompt_tokens": prompt,
                             "completion_tokens": int(sum(used[r] for r in rows)), "batch_size": len(group)})
        return outcomes

    def _safe_text(self, ids: list[int], stop: tuple[str, ...]) -> str:
        """The part of a row's text so far that later tokens cannot change: cut at a stop string, minus
        what could still become one, trailing whitespace (the final answer is stripped) and a
        half-decoded character."""
        text = self.model.decoder.tokenizer.decode(ids, skip_special_tokens=True).lstrip()
        cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
        if cuts:
            text = text[: min(cuts)]
        elif stop:
            text = text[: max(0, len(text) - max(len(s) for s in stop) + 1)]
        return text.rstrip().removesuffix("\ufffd")

    @staticmethod
    def _push(pending: PendingChat, choice: int, text: str) -> None:
        # Only ever append: what a client received cannot be taken back.
        sent = pending.emitted[choice]
        if len(text) > len(sent) and text.startswith(sent):
            pending.emitted[choice] = text
            pending.loop.call_soon_threadsafe(pending.queue.put_nowait, (choice, text[len(sent) :]))

    # ---- masks ----------------------------------------------------------------------------------

    async def detect(self, request: DetectRequest) -> dict[str, Any]:
        """The change mask of a whole scene, tiled at native resolution: {"scene": SceneMask} or {"error"}."""
        if not self.model.mask_heads:
            return {"error": {"status": 400, "param": "model",
                              "message": f"the model '{self.name}' has no mask head, so it cannot detect changes"}}
        try:
            return {"scene": await asyncio.to_thread(self._detect_scene, request)}
        except SceneError as exc:
            return {"error": {"status": 400, "message": str(exc), "param": None}}

    def _detect_scene(self, request: DetectRequest) -> SceneMask:
        with self._model_lock:
            prompt = request.prompt if request.prompt is not None else self.prompts["mask"]
            return detect_scene(self.model, request.before, request.after, threshold=request.threshold,
                                prompt=prompt, device=self.device)
