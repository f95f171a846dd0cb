"""What one request may cost, enforced at the edge (the ingress) before any expensive work.

A single request must not be able to hold a model replica or the ingress for long: a 60 MB prompt
was once tokenised in full inside the replica (minutes, gigabytes), and a 64 MP PNG took seconds of
CPU to decode for a model that reads 64x64. Every limit is a `ServeConfig` key with the default here.
"""

from __future__ import annotations

from dataclasses import dataclass

from rsforge.serve.errors import APIError

# Two images of 20 MiB (the per-image limit) as base64 are ~54 MiB, so the default body limit still fits them.
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_TEXT_CHARS = 32_768
DEFAULT_MAX_TOTAL_TEXT_CHARS = 131_072
# 4096 x 4096: an all-zero PNG this size decodes in a fraction of a second; larger scenes belong to `rsforge detect`.
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096
# A detection upload is read at native resolution, tile by tile (`rsforge.geo.tiling`), so it may be larger: 8192 x
# 8192 is the largest scene `rsforge detect` reads whole when rasterio is missing; time grows with the pixels.
DEFAULT_MAX_DETECT_PIXELS = 8192 * 8192


@dataclass(frozen=True)
class Limits:
    """`max_text_chars` applies to each text part (or string `content`), `max_total_text_chars` to
    the whole conversation; `max_image_pixels` (chat images) and `max_detect_pixels` (each scene of a
    change-detection request) are checked from an image's header, before decoding."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    max_total_text_chars: int = DEFAULT_MAX_TOTAL_TEXT_CHARS
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_detect_pixels: int = DEFAULT_MAX_DETECT_PIXELS


DEFAULT_LIMITS = Limits()


def check_text(text: str, where: str, limits: Limits) -> None:
    """A 400 naming `where` for text over `max_text_chars` or text no tokenizer can encode: a lone
    UTF-16 surrogate (JSON allows "\\ud800") makes tokenizers raise deep inside the model replica."""
    if len(text) > limits.max_text_chars:
        raise APIError(400, f"{where} holds {len(text)} characters, over the limit of {limits.max_text_chars}",
                       param=where, code="text_too_long")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise APIError(400, f"{where} is not valid Unicode text: a lone surrogate at character {exc.start}",
                       param=where) from None


def estimated_tokens(texts: list[str]) -> int:
    """A cheap lower bound on the tokens `texts` take in any tokenizer the decoders use: each
    whitespace-separated word is at least one token (word-level, BPE and SentencePiece alike)."""
    return sum(len(text.split()) for text in texts)


def check_prompt(texts: list[str], max_context: int | None, limits: Limits) -> None:
    """A 400 for a conversation over `max_total_text_chars`, or one that cannot fit the model's
    context of `max_context` tokens even by the lower bound (the replica still counts exactly)."""
    total = sum(len(text) for text in texts)
    if total > limits.max_total_text_chars:
        raise APIError(400, f"the messages hold {total} characters of text, over the limit of "
                       f"{limits.max_total_text_chars}", param="messages", code="text_too_long")
    if max_context is not None and (tokens := estimated_tokens(texts)) > max_context:
        raise APIError(400, f"prompt of at least {tokens} tokens exceeds the decoder context of {max_context}",
                       param="messages", code="context_length_exceeded")
