from collections.abc import Iterable
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rsforge.core.configs import DecoderConfig

WORD_LEVEL = "word_level"
DEFAULT_TEMPLATE = "default"
Dtype = Literal["float32", "bfloat16", "float16"]


class LoraOptions(BaseModel):
    """LoRA adapters through `peft`; the base LM is frozen, only the adapters train."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(8, ge=1)
    alpha: float = 16.0
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | str | None = Field(
        None, description="module names (or 'all-linear'); default: peft's choice for the architecture"
    )


class _LanguageModelConfig(DecoderConfig):
    """What every Hugging Face decoder shares: where the weights and tokenizer come from, and how it trains."""

    pretrained: str | None = Field(None, description="local directory or hub name of the model")
    config: dict[str, Any] | None = Field(
        None, description="AutoConfig keys (with model_type) to build a randomly initialised model instead"
    )
    tokenizer: str | None = Field(
        None, description=f"path/hub name; default: `pretrained`; '{WORD_LEVEL}': a word vocabulary from the data"
    )
    vocab: list[str] | None = Field(None, description=f"the '{WORD_LEVEL}' vocabulary (filled from training texts)")
    chat_template: str | None = Field(
        None,
        description=f"Jinja chat template; default: the tokenizer's own if it has one, else the built-in "
        f"'USER: ... ASSISTANT: ...' layout ('{DEFAULT_TEMPLATE}' forces that layout)",
    )
    freeze: bool = False
    lora: LoraOptions | None = None
    dtype: Dtype = "float32"
    device_map: str | dict[str, Any] | None = Field(
        None, description="passed to from_pretrained (e.g. 'auto' to shard a large LM over GPUs)"
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.pretrained is None) == (self.config is None):
            raise ValueError("give exactly one of 'pretrained' (weights) or 'config' (random init)")
        if self.pretrained is None and self.tokenizer is None:
            raise ValueError(f"a decoder built from 'config' needs 'tokenizer' (a path or '{WORD_LEVEL}')")
        if self.device_map is not None and self.pretrained is None:
            raise ValueError("'device_map' places pretrained weights; a decoder built from 'config' has none")
        return self

    def prepare(self, corpus: Iterable[str]) -> Self:
        if self.tokenizer != WORD_LEVEL or self.vocab is not None:
            return self
        from rsforge.decoders.word_level import build_vocab

        return self.model_copy(update={"vocab": build_vocab(corpus)})


class HFCausalLMConfig(_LanguageModelConfig):
    """Any `AutoModelForCausalLM` reading visual tokens as input embeddings."""


class HFSeq2SeqLMConfig(_LanguageModelConfig):
    """Any `AutoModelForSeq2SeqLM` (T5 / FlanT5) whose encoder reads the visual tokens and the prompt,
    as InstructBLIP's and BLIP-2's FlanT5 variants do. `chat_template` renders the encoder's prompt;
    without one, a single user turn is its bare text and longer prompts take the built-in role prefixes."""


class HFVLMConfig(_LanguageModelConfig):
    """A Hugging Face image-text-to-text model (Qwen2-VL class) that owns its vision tower."""

    image_size: int = Field(448, ge=1, description="pixels per side the model reads (a multiple of patch x merge)")
    num_images: int = Field(2, ge=1, le=8, description="images per conversation (2: a before/after pair)")
    image_processor: dict[str, Any] = Field(
        default_factory=dict,
        description="Qwen2VLImageProcessor options (patch_size, merge_size, image_mean, ...); "
        "with `pretrained`, they override the saved processor's",
    )
