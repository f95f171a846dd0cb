"""One sample schema for every task.

Coordinates (boxes, polygons) are in pixels of the first image, origin top-left, x to the right,
y down; this is the one convention used everywhere in rsforge. A box is `[x1, y1, x2, y2]`, an
oriented box the 8-number polygon `[x1, y1, x2, y2, x3, y3, x4, y4]` of its corners.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# What a text-guided mask head looks for when the data names nothing more specific: readers of mask data
# without per-image prompts write it, and heads fall back to it, so training and inference ask alike.
DEFAULT_MASK_PROMPT = "the changed areas"

Role = Literal["user", "assistant"]

META_CANDIDATES = "candidates"
META_LABEL = "label"


@dataclass(frozen=True)
class Turn:
    role: Role
    text: str

    def __post_init__(self) -> None:
        if self.role not in ("user", "assistant"):
            raise ValueError(f"turn role must be 'user' or 'assistant', got {self.role!r}")


@dataclass
class Sample:
    """1 or 2 images (before, after), a conversation, and optional targets.

    `images` and `mask` are file paths, read lazily by the dataset. `references` are all the
    reference answers for the last assistant turn (captioning metrics use them); the
    conversation's own last answer is one of them. `boxes` are the targets of grounding tasks
    (4 or 8 numbers each, see above). `meta` carries what metrics group or check by, e.g.
    `question_type` (VQA accuracy per type), `candidates` (classification), `expression` (grounding),
    `label` (classification: the index of the sample's class in its `candidates`, what a classifier
    head trains on).
    """

    id: str
    images: tuple[str, ...]
    conversation: list[Turn]
    task: str = "change_captioning"
    mask: str | None = None
    boxes: list[list[float]] | None = None
    references: list[str] = field(default_factory=list)
    changed: bool | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= len(self.images) <= 2:
            raise ValueError(f"sample {self.id}: expected 1 or 2 images, got {len(self.images)}")
        if not self.conversation or self.conversation[0].role != "user":
            raise ValueError(f"sample {self.id}: the conversation must start with a user turn")

    @property
    def prompt(self) -> list[Turn]:
        """The conversation up to (not including) the final assistant answer."""
        if self.conversation and self.conversation[-1].role == "assistant":
            return self.conversation[:-1]
        return list(self.conversation)

    @property
    def answer(self) -> str | None:
        if self.conversation and self.conversation[-1].role == "assistant":
            return self.conversation[-1].text
        return None
