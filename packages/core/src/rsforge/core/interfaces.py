"""The part interfaces, and what flows between parts.

Every kind of part implements one class here; a plugin subclasses it and registers the subclass's
import string through a hook (see `rsforge.core.hookspecs`). What a part *can* do beyond the minimum
is declared as class attributes (its abilities), never probed with `getattr` or signatures, so the
assembler can refuse a recipe that asks for more than its parts declare.

A part whose frozen weights come from a source its config names (a pretrained checkpoint, a LoRA
base model) sets `weights_from_source = True`: `save_pretrained` then stores only its trainable
parameters and buffers, and `from_pretrained` gets the rest from the source again.

Shapes: `T` is the number of images per sample (2 for a before/after pair, 1 for a single image
or after a bridge fused the two dates). Encoders see `(B*T, 3, H, W)` and return per-image
features; the model container folds them back to `(B, T, ...)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from rsforge.core.sample import Turn


@dataclass
class VisualFeatures:
    """tokens: (B, T, N, D); maps: per scale (B, T, C_i, H_i, W_i)."""

    tokens: torch.Tensor
    maps: list[torch.Tensor] = field(default_factory=list)

    @property
    def dim(self) -> int:
        return self.tokens.shape[-1]

    @property
    def num_images(self) -> int:
        return self.tokens.shape[1]

    def to(self, device: torch.device | str) -> VisualFeatures:
        return VisualFeatures(self.tokens.to(device), [m.to(device) for m in self.maps])


class Encoder(nn.Module):
    """images (B, 3, H, W) in [0, 1] -> tokens (B, N, D) and maps [(B, C_i, H_i, W_i)]."""

    weights_from_source: bool = False
    out_dim: int
    map_channels: list[int]
    image_size: int
    interpolation: str
    in_chans: int = 3

    def check_input(self, images: torch.Tensor) -> None:
        expected = (self.in_chans, self.image_size, self.image_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"encoder expects {self.in_chans}-band {self.image_size}x{self.image_size} images, "
                             f"got {tuple(images.shape)}")

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        raise NotImplementedError


class Bridge(nn.Module):
    """VisualFeatures -> VisualFeatures. `bitemporal` bridges read both dates and fuse them (T: 2 -> 1).

    `instructions`: each sample's instruction (its first user turn), for bridges that condition on it
    (`reads_instruction = True`, e.g. an instruction-aware Q-Former); others ignore it. `instruction` says
    which text of a conversation that is (`rsforge.core.batch.INSTRUCTIONS`): `first_turn`, or `dialogue`
    (the current question after the exchanges before it, as DeltaVLM writes it). Bridges pass
    the encoder's `maps` on with the dates kept apart; a bridge with `aligns_maps = True` returns them
    transformed (still (B, 2, C_i, H_i, W_i)), and mask heads then read its maps.
    """

    in_dim: int
    out_dim: int
    bitemporal: bool = False
    reads_instruction: bool = False
    instruction: str = "first_turn"
    aligns_maps: bool = False

    def forward(self, features: VisualFeatures, instructions: list[str] | None = None) -> VisualFeatures:
        raise NotImplementedError


@dataclass(frozen=True)
class GenerationOptions:
    """How to decode: the one place that holds the defaults of every generation path.

    Greedy at temperature 0, else multinomial sampling with temperature and top-p; `num_beams > 1`:
    beam search, its scores divided by length ** `length_penalty`. `repetition_penalty` > 1 lowers the
    logits of tokens already generated (CTRL's penalty, as `transformers` applies it; BLIP-2 / DeltaVLM
    decode with 1.5). `num_return_sequences` answers per input, input-major. A row ends at the decoder's
    stop tokens or once its text contains one of `stop` (the text is cut there)."""

    max_new_tokens: int = 32
    temperature: float = 0.0
    top_p: float = 1.0
    num_beams: int = 1
    num_return_sequences: int = 1
    stop: tuple[str, ...] = ()
    repetition_penalty: float = 1.0
    length_penalty: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "stop", tuple(self.stop))
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0 (1 = none), got {self.repetition_penalty}")
        if self.num_beams < 1 or self.num_return_sequences < 1:
            raise ValueError("num_beams and num_return_sequences must be >= 1")
        if self.num_beams > 1 and self.temperature > 0:
            raise ValueError("beam search is deterministic: use num_beams > 1 with temperature 0")
        if self.num_return_sequences > self.num_beams and self.temperature == 0:
            raise ValueError(f"{self.num_return_sequences} return sequences need sampling (temperature > 0) "
                             "or at least as many beams")


OnTokens = Callable[[torch.Tensor, torch.Tensor], "torch.Tensor | None"]
"""Token streaming: called after every decoding step with that step's tokens (N,) (pad in rows that
had already ended) and `alive` (N,) bool, the rows whose token counts. It may return a bool (N,)
tensor of rows to end now (a caller's own length limit, a client that went away) or None. It runs
in the decoding thread, so it should hand the tokens on rather than do slow work."""


@dataclass
class Generation:
    """Texts plus the tokens behind them, `num_return_sequences` rows per input, input-major.

    `token_ids` (N, L) are the generated ids (pad after the end), `mask` (N, L) marks the tokens that
    count (up to and including the stop token), `logprobs` (N, L) each token's log-probability under
    the distribution it was drawn from (temperature and top-p applied), without gradient.
    `finish_reasons`: per row, `stop` (a stop token or string ended it) or `length` (it ran out of
    `max_new_tokens` or of the decoder's context)."""

    texts: list[str]
    token_ids: torch.Tensor
    mask: torch.Tensor
    logprobs: torch.Tensor
    finish_reasons: list[str]


class Decoder(nn.Module):
    """A language model that reads visual tokens (B, N, hidden_size) followed by a conversation.

    A decoder with `reads_images = True` owns its vision tower (a multi-image VLM): it reads the raw
    images (B, T, 3, S, S) instead of visual tokens, declares `image_size` and `num_images`, and its
    recipe has no encoder, bridges or heads.

    Abilities: `streams = True` when `generate` calls `on_tokens` at every step (otherwise it is
    ignored and each answer arrives whole); `scores_continuations = True` when `continuation_logits`
    is implemented (an SCST stage needs it)."""

    hidden_size: int
    max_context: int
    tokenizer: Any
    weights_from_source: bool = False
    reads_images: bool = False
    streams: ClassVar[bool] = False
    scores_continuations: ClassVar[bool] = False

    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in this decoder's vocabulary (no special tokens)."""
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def forward(self, visual: torch.Tensor, conversations: list[list[Turn]]) -> torch.Tensor:
        """Mean cross-entropy over assistant tokens only."""
        raise NotImplementedError

    def generate(self, visual: torch.Tensor, conversations: list[list[Turn]], options: GenerationOptions,
                 on_tokens: OnTokens | None = None) -> Generation:
        """Answers to each conversation (ending with a user turn), decoded as `options` say."""
        raise NotImplementedError

    def continuation_logits(self, visual: torch.Tensor, conversations: list[list[Turn]],
                            token_ids: torch.Tensor) -> torch.Tensor:
        """Logits (N, L, V) that predict `token_ids` (N, L) after each prompt, with gradient: SCST's
        policy term and logit regularisers read them. Positions past a row's end are don't-care."""
        raise NotImplementedError


class Head(nn.Module):
    """Reads the encoder's maps of both dates -> logits (B, K, H, W) at image resolution.

    `instructions`: each sample's instruction (its first user turn), for heads steered by text
    (`reads_instruction = True`); other heads ignore it. A head with `reads_bridged_tokens = True` gets
    the tokens after the bridge chain (B, T', N, D) together with the encoder's maps of both dates,
    instead of the encoder's tokens.
    A head with `predicts_mask = False` returns class logits (B, K) from pooled tokens and trains on
    `Batch.labels`; `bitemporal = False` heads do not make the model read a before/after pair.
    """

    reads_bridged_tokens: bool = False
    reads_instruction: bool = False
    predicts_mask: bool = True
    bitemporal: bool = True

    def forward(self, features: VisualFeatures, image_size: int,
                instructions: list[str] | None = None) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Reward:
    """A text reward: `(candidates, references, extras) -> Tensor (B,)` raw scores, one per candidate.

    Abilities: `needs_corpus = True` when `fit(references)` must see the training references first
    (CIDEr-D's document frequencies); `reads_extras` names the `extras` keys it reads besides the texts
    (`masks`, `mask_valid`, `pred_masks`); `reads_caption = False` when the score does not depend on the
    candidate text (a mask IoU), which makes it useless to SCST: a sample and its baseline score the same,
    so the assembler refuses it in a recipe with an scst stage. `close()` releases what it holds (a Java
    process)."""

    needs_corpus: ClassVar[bool] = False
    reads_extras: ClassVar[frozenset[str]] = frozenset()
    reads_caption: ClassVar[bool] = True

    def fit(self, corpus: list[list[str]]) -> Reward:
        return self

    def __call__(self, candidates: Sequence[str], references: Sequence[Sequence[str]],
                 extras: dict[str, Any] | None = None) -> torch.Tensor:
        raise NotImplementedError

    def close(self) -> None:
        """Release held resources; the default holds none."""


class LogitRegulariser:
    """A term on the policy's logits: `(logits (N, L, V), mask (N, L)) -> (N,)`, added to the SCST loss
    with its recipe weight (varentropy, entropy)."""

    def __call__(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
