"""Conversations -> token ids, labels (assistant tokens only) and the places where images go.

Two layouts:

- the tokenizer's own chat template (or one given in the config), rendered with
  `apply_chat_template`. Assistant spans are found by rendering growing prefixes of the
  conversation: the text that the k-th assistant message adds after the generation prompt of the
  messages before it (its answer and end-of-turn marker) is what the loss covers. Each piece is
  tokenized on its own, so a prompt tokenizes exactly as it will at generation time.
- the built-in default when there is no template:
  `<s> USER: text ASSISTANT: answer </s> USER: ...`, loss on every answer and its `</s>`.

Images: the first `<image>` in a user turn marks where the visual tokens go (a decoder that reads
several images maps the i-th `<image>` to the i-th image). Without any `<image>`, they go before
everything (`prefix`) or at the start of the first user turn (`first_user`, the Qwen-VL habit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rsforge.core.sample import Turn

IGNORE = -100
IMAGE = "<image>"
ROLE_PREFIX = {"user": "USER:", "assistant": "ASSISTANT:"}
# Stands in for an image inside rendered template text; no template or tokenizer produces it.
_SLOT = "\u0000rsforge-image\u0000"


@dataclass
class Encoded:
    """ids/labels of one conversation; `slots[i]` is the index in `ids` where image (block) i goes."""

    ids: list[int]
    labels: list[int]
    slots: list[int]


def _place_images(
    conversation: list[Turn], count: int, default: Literal["prefix", "first_user"]
) -> tuple[list[str], bool]:
    """Turn texts with `count` slot markers placed; True when they sit before all text (`prefix`)."""
    texts = [t.text for t in conversation]
    found = sum(t.text.count(IMAGE) for t in conversation if t.role == "user")
    if found == 0:
        if default == "prefix":
            return texts, True
        first = next(i for i, t in enumerate(conversation) if t.role == "user")
        texts[first] = _SLOT * count + texts[first]
        return texts, False
    if count > 1 and found != count:
        raise ValueError(f"the conversation has {found} '{IMAGE}' placeholders for {count} images; give one per image")
    remaining = count
    for i, turn in enumerate(conversation):
        if turn.role != "user":
            continue
        parts = texts[i].split(IMAGE)
        out = parts[0]
        for part in parts[1:]:
            out += (_SLOT if remaining > 0 else "") + part  # extra placeholders are dropped
            remaining -= 1
        texts[i] = out
    return texts, False


class ChatFormat:
    """Encodes conversations for one tokenizer, with its template or the default layout."""

    def __init__(self, tokenizer, template: str | None) -> None:
        self.tokenizer = tokenizer
        self.template = template

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def encode(
        self,
        conversation: list[Turn],
        *,
        generation_prompt: bool,
        images: int = 1,
        default: Literal["prefix", "first_user"] = "prefix",
    ) -> Encoded:
        texts, prefix = _place_images(conversation, images, default)
        roles = [t.role for t in conversation]
        pieces = self._template_pieces(roles, texts, generation_prompt) if self.template else \
            self._default_pieces(roles, texts, generation_prompt)
        out = Encoded([], [], [0] * images if prefix else [])
        for text, trained in pieces:
            for k, chunk in enumerate(text.split(_SLOT)):
                if k > 0:
                    out.slots.append(len(out.ids))
                ids = self._ids(chunk)
                out.ids += ids
                out.labels += ids if trained else [IGNORE] * len(ids)
        return out

    def _default_pieces(self, roles: list[str], texts: list[str], generation_prompt: bool):
        """(text, trained) pieces of the built-in layout; role prefixes are joined by ids, not text."""
        bos = self.tokenizer.bos_token
        pieces: list[tuple[str, bool]] = [(bos, False)] if bos is not None else []
        for role, text in zip(roles, texts, strict=True):
            pieces.append((ROLE_PREFIX[role], False))
            pieces.append((text, role == "assistant"))
            if role == "assistant":
                pieces.append((self.tokenizer.eos_token, True))
        if generation_prompt:
            pieces.append((ROLE_PREFIX["assistant"], False))
        return pieces

    def _render(self, messages: list[dict], generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(
            messages, chat_template=self.template, tokenize=False, add_generation_prompt=generation_prompt
        )

    def _template_pieces(self, roles: list[str], texts: list[str], generation_prompt: bool):
        messages = [{"role": r, "content": t} for r, t in zip(roles, texts, strict=True)]
        full = self._render(messages, generation_prompt)
        pieces: list[tuple[str, bool]] = []
        done = 0
        for k, role in enumerate(roles):
            if role != "assistant":
                continue
            start = len(self._render(messages[:k], True))
            end_text = self._render(messages[: k + 1], False)
            if not full.startswith(end_text) or start < done or start > len(end_text):
                raise ValueError(
                    "the chat template does not render a conversation as a growing prefix, so the assistant "
                    "spans cannot be found; set decoder.chat_template to a template that does (or 'default')"
                )
            pieces += [(full[done:start], False), (full[start : len(end_text)], True)]
            done = len(end_text)
        pieces.append((full[done:], False))
        return [(text, trained) for text, trained in pieces if text]
