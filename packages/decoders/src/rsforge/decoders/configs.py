from collections.abc import Iterable
from typing import Any, Self

from pydantic import Field, model_validator

from rsforge.core.config import DecoderConfig

WORD_LEVEL = "word_level"


class HFCausalLMConfig(DecoderConfig):
    pretrained: str | None = Field(None, description="local directory or hub name of a causal LM")
    config: dict[str, Any] | None = Field(
        None, description="AutoConfig keys (with model_type) to build a randomly initialised LM instead"
    )
    tokenizer: str | None = Field(
        None, description=f"path/hub name; default: `pretrained`; '{WORD_LEVEL}': a word vocabulary from the data"
    )
    vocab: list[str] | None = Field(None, description=f"the '{WORD_LEVEL}' vocabulary (filled from training texts)")
    freeze: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.pretrained is None) == (self.config is None):
            raise ValueError("give exactly one of 'pretrained' (weights) or 'config' (random init)")
        if self.pretrained is None and self.tokenizer is None:
            raise ValueError(f"a decoder built from 'config' needs 'tokenizer' (a path or '{WORD_LEVEL}')")
        return self

    def prepare(self, corpus: Iterable[str]) -> Self:
        if self.tokenizer != WORD_LEVEL or self.vocab is not None:
            return self
        from rsforge.decoders.word_level import build_vocab

        return self.model_copy(update={"vocab": build_vocab(corpus)})
