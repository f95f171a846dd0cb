"""What flows between parts, and the small interfaces each kind of part implements.

A part whose frozen weights come from a source its config names (a pretrained checkpoint, a LoRA
base model) sets `weights_from_source = True`: `save_pretrained` then stores only its trainable
parameters and buffers, and `from_pretrained` gets the rest from the source again.

Shapes: `T` is the number of images per sample (2 for a before/after pair, 1 for a single image
or after a bridge fused the two dates). Encoders see `(B*T, 3, H, W)` and return per-image
features; the model container folds them back to `(B, T, ...)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from rsforge.core.data.schema import Turn


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

    `instructions`: each sample's instruction text (its first user turn), for bridges that condition
    on it (`reads_instruction = True`, e.g. an instruction-aware Q-Former); others ignore it.
    Bridges pass the encoder's `maps` on with the dates kept apart; a bridge with `aligns_maps = True`
    returns them transformed (still (B, 2, C_i, H_i, W_i)), and mask heads then read its maps.
    """

    in_dim: int
    out_dim: int
    bitemporal: bool = False
    reads_instruction: bool = False
    aligns_maps: bool = False

    def forward(self, features: VisualFeatures, instructions: list[str] | None = None) -> VisualFeatures:
        raise NotImplementedError


class Decoder(nn.Module):
    """A language model that reads visual tokens (B, N, hidden_size) followed by a conversation.

    A decoder with `reads_images = True` owns its vision tower (a multi-image VLM): it reads the raw
    images (B, T, 3, S, S) instead of visual tokens, declares `image_size` and `num_images`, and its
    recipe has no encoder, bridges or heads."""

    hidden_size: int
    weights_from_source: bool = False
    reads_images: bool = False

    def forward(self, visual: torch.Tensor, conversations: list[list[Turn]]) -> torch.Tensor:
        """Mean cross-entropy over assistant tokens only."""
        raise NotImplementedError

    @torch.no_grad()
    def generate(
        self,
        visual: torch.Tensor,
        conversations: list[list[Turn]],
        *,
        max_new_tokens: int = 32,
        temperature: float = 0.0,
        top_p: float = 1.0,
        num_beams: int = 1,
        num_return_sequences: int = 1,
        stop: list[str] | None = None,
    ) -> list[str]:
        """Greedy (temperature 0), sampling (temperature, top_p) or beam search (num_beams > 1);
        `num_return_sequences` answers per input, input-major; a row ends at any `stop` string.
        A decoder that can stream also takes `on_tokens`, a callable given each step's tokens (N,) and
        the rows still alive (N,) bool, that may return a bool (N,) of rows to end now (the serving
        app checks the signature for it and otherwise sends each answer whole)."""
        raise NotImplementedError


class Head(nn.Module):
    """Reads the encoder's maps of both dates -> logits (B, K, H, W) at image resolution.

    `prompts`: each sample's prompt text (the first user turn), for heads steered by text; other
    heads ignore it. A head with `reads_bridged_tokens = True` gets the tokens after the bridge chain
    (B, T', N, D) together with the encoder's maps of both dates, instead of the encoder's tokens.
    A head with `predicts_mask = False` returns class logits (B, K) from pooled tokens and trains on
    `batch["labels"]`; `bitemporal = False` heads do not make the model read a before/after pair.
    """

    reads_bridged_tokens: bool = False
    predicts_mask: bool = True
    bitemporal: bool = True

    def forward(self, features: VisualFeatures, image_size: int, prompts: list[str] | None = None) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
