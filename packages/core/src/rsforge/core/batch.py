"""What the model container reads and returns: a typed batch, and the losses of a forward pass."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from itertools import pairwise
from typing import Any

import torch

from rsforge.core.interfaces import VisualFeatures
from rsforge.core.sample import Turn


def first_user_turns(conversations: list[list[Turn]]) -> list[str]:
    """Each conversation's first user turn: what an instruction-aware bridge reads and what a
    text-guided head is steered by, in training and generation alike."""
    return [next((t.text for t in turns if t.role == "user"), "") for turns in conversations]


def _blip_caption(text: str, max_words: int = 50) -> str:
    """LAVIS's `BlipCaptionProcessor.pre_caption`: lower case, `.!"()*#:;~` to spaces, at most 50 words."""
    text = re.sub(r"\s{2,}", " ", re.sub(r"([.!\"()*#:;~])", " ", text.lower())).strip(" ")
    return " ".join(text.split(" ")[:max_words])


def dialogue_questions(conversations: list[list[Turn]]) -> list[str]:
    """Each conversation's current question after the exchanges before it, as DeltaVLM's dataset writes its
    Q-Former text for a dialogue: `' '.join(f" q: {q} a: {a}" ...).strip() + '  q: ' + question`, `<image>`
    markers removed, then LAVIS's `blip_caption` processing. A first question stands alone, as DeltaVLM's
    inference asks it. The current question is the last user turn (in training, the one the last answer
    replies to)."""
    out = []
    for turns in conversations:
        turns = turns[:-1] if turns and turns[-1].role == "assistant" else turns
        users = [i for i, t in enumerate(turns) if t.role == "user"]
        if not users:
            out.append("")
            continue
        history = turns[: users[-1]]
        pairs = [(q.text, a.text) for q, a in pairwise(history)
                 if q.role == "user" and a.role == "assistant"]
        context = " ".join(f" q: {q} a: {a}" for q, a in pairs).strip()
        question = turns[users[-1]].text
        text = f"{context}  q: {question}" if context else question
        out.append(_blip_caption(text.replace("<image>", " ")))
    return out


INSTRUCTIONS = {"first_turn": first_user_turns, "dialogue": dialogue_questions}


@dataclass
class Batch:
    """B samples, collated.

    `images` (B, T, 3, S, S) in [0, 1]; `conversations` each sample's turns (the last one the answer
    being trained on). `masks` (B, S, S) change masks, zeros where `mask_valid` (B,) is False; None when
    no sample has one. `labels` (B,) class ids for classification heads, -1 where a sample has none.
    `references` every reference answer per sample (captioning metrics, SCST rewards); `ids`, `tasks`,
    `changed`, `meta` as in `Sample`. `features`: the encoder's output for these images when it was
    computed earlier (a feature cache of a frozen encoder); the model then skips its encoder."""

    images: torch.Tensor
    conversations: list[list[Turn]]
    masks: torch.Tensor | None = None
    mask_valid: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    references: list[list[str]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    changed: list[bool | None] = field(default_factory=list)
    meta: list[dict[str, Any]] = field(default_factory=list)
    features: VisualFeatures | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def prompts(self) -> list[list[Turn]]:
        """Each conversation up to (not including) its final assistant answer."""
        return [c[:-1] if c and c[-1].role == "assistant" else list(c) for c in self.conversations]

    @property
    def instructions(self) -> list[str]:
        return first_user_turns(self.conversations)

    def to(self, device: torch.device | str) -> Batch:
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in moved.items():
            if isinstance(value, torch.Tensor | VisualFeatures):
                moved[name] = value.to(device)
        return replace(self, **moved)


@dataclass
class Losses:
    """The losses of one forward pass. `total` is what the optimiser steps on: the decoder's answer
    cross-entropy (`lm`) and every head's loss (`heads`, keyed `mask_<name>` / `class_<name>`), each
    weighted as the recipe says. A head whose targets the batch lacks has no entry."""

    total: torch.Tensor
    lm: torch.Tensor | None = None
    heads: dict[str, torch.Tensor] = field(default_factory=dict)

    def values(self) -> dict[str, float]:
        """Every term as a float, `loss` being the total (what metrics logs and progress bars show)."""
        out = {"loss": float(self.total.detach())}
        if self.lm is not None:
            out["lm"] = float(self.lm.detach())
        out.update({name: float(value.detach()) for name, value in self.heads.items()})
        return out
