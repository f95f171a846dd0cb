from typing import Literal, Self

from pydantic import Field, model_validator

from rsforge.core.configs import BridgeConfig


class DifferenceBridgeConfig(BridgeConfig):
    fusion: Literal["concat_diff", "diff"] = Field(
        "concat_diff", description="concat_diff: Linear([t0; t1; t1 - t0]); diff: Linear(t1 - t0)"
    )


class MLPProjectorConfig(BridgeConfig):
    depth: int = Field(2, ge=1, description="number of Linear layers, GELU between them")


class DifferencePerceptionConfig(BridgeConfig):
    """DeltaVLM's IDPM/CSRM; `out_dim` defaults to `in_dim` (DeltaVLM keeps the ViT width, 1408)."""

    norm_input: bool = Field(True, description="LayerNorm each date's tokens first (DeltaVLM's ln_vision on the ViT)")
    dropout: float = Field(0.5, ge=0, lt=1, description="dropout on the context and gate maps (0.5 in DeltaVLM)")
    weights: str | None = Field(None, description="local safetensors file of released IDPM/CSRM weights, DeltaVLM's "
                                "names (ln_vision, context1-3, gate1-2) or this bridge's")


class QFormerConfig(BridgeConfig):
    """InstructBLIP's Q-Former; `out_dim` (the projection's width) defaults to `hidden_size`.

    Defaults are InstructBLIP's (BERT-base: 12 layers, 768 wide, 12 heads, cross-attention every 2nd
    layer, 32 queries). `tokenizer`: a BERT tokenizer (local path or hub name) for the instruction, or
    null for hashed words into `vocab_size` buckets (no vocabulary file: tiny and offline models)."""

    num_queries: int = Field(32, ge=1, description="learned query tokens; the bridge outputs one token per query")
    hidden_size: int = Field(768, ge=1)
    num_layers: int = Field(12, ge=1)
    num_heads: int = Field(12, ge=1)
    intermediate_size: int = Field(3072, ge=1)
    cross_attention_frequency: int = Field(2, ge=1, description="layer i cross-attends to the image iff i % this == 0")
    max_instruction_tokens: int = Field(128, ge=1, description="instruction tokens kept (InstructBLIP: 128)")
    max_position_embeddings: int = Field(512, ge=1, description="instruction positions the Q-Former embeds")
    tokenizer: str | None = Field(None, description="BERT tokenizer path or hub name; null = hashed words")
    vocab_size: int = Field(30523, ge=2, description="word embedding rows (InstructBLIP: BERT's 30522 + [DEC])")
    norm_memory: bool = Field(True, description="LayerNorm the image tokens first (InstructBLIP's ln_vision)")
    instruction: Literal["first_turn", "dialogue"] = Field(
        "first_turn", description="the text it reads: the first user turn, or `dialogue`: the current question "
        "after the earlier exchanges, as DeltaVLM's Q-Former reads a dialogue ('q .. a .. q ..': lower case, "
        "no punctuation, 50 words)")
    instruction_aware: bool = Field(
        True, description="false: BLIP-2's Q-Former, the queries alone read the image (no instruction text; the "
        "text-only weights are frozen, as nothing reaches them)")
    dropout: float = Field(0.1, ge=0, lt=1, description="hidden and attention dropout (BERT's 0.1)")
    weights: str | None = Field(None, description="local safetensors file of Q-Former weights, HF or LAVIS key layout")
    load_projection: bool = Field(True, description="with `weights`: also load the projection to the decoder "
                                  "(language_projection / llm_proj / t5_proj), which must then match in shape")


class AttentionPoolerConfig(BridgeConfig):
    """AerithVLM / LHRS-Bot vision perceiver: learned queries read the encoder's levels stage by stage."""

    num_queries: int = Field(144, ge=1, description="learned queries = output tokens per image")
    num_layers: int = Field(6, ge=1, description="residual blocks (cross-attn + self-attn + MLP) over all stages")
    num_heads: int = Field(16, ge=1)
    hidden: int = Field(1024, ge=1, description="width of the queries inside the pooler")
    mlp_ratio: float = Field(4.0, gt=0)
    map_channels: list[int] | None = Field(
        None, description="channels of the encoder maps (in order; the assembler does not fill this); "
        "none: read the final tokens only")
    levels: list[int] | None = Field(
        None, description="indices into the maps read before the final tokens, one stage each (default: all)")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.hidden % self.num_heads:
            raise ValueError(f"hidden={self.hidden} must be divisible by num_heads={self.num_heads}")
        if self.levels is not None:
            count = len(self.map_channels or [])
            bad = [i for i in self.levels if not -count <= i < count]
            if bad:
                raise ValueError(f"levels: {bad} out of range for {count} map(s) in map_channels")
        stages = len(self.read_levels) + 1
        if self.num_layers < stages:
            raise ValueError(f"num_layers={self.num_layers} is fewer than the {stages} stages "
                             f"({stages - 1} map level(s) + the final tokens); every stage needs a block")
        return self

    @property
    def read_levels(self) -> list[int]:
        """The map indices the stages read, in order (non-negative)."""
        count = len(self.map_channels or [])
        return [i % count for i in self.levels] if self.levels is not None else list(range(count))


class BEVAlignmentConfig(BridgeConfig):
    """SegChange-R1's per-scale linear-attention alignment of both dates' maps (+ difference tokens)."""

    map_channels: list[int] = Field(min_length=1, description="channels of the encoder maps, shallow to deep")
    heads: int = Field(8, ge=1, description="linear-attention heads per scale")
    key_dim: int = Field(64, ge=1, description="width of each head's queries/keys/values")
    tokens: bool = Field(
        True, description="emit decoder tokens: a 1x1 conv over [f1, f2, |f1-f2|, f1*f2] of the coarsest "
        "aligned scale; false (mask-only recipes): the encoder tokens' after-minus-before, so no parameter "
        "sits without a gradient")


class ImageSeparatorsConfig(BridgeConfig):
    """Multi-image layout: a learned marker before (and optionally after) each image's tokens."""

    max_images: int = Field(4, ge=1, description="image positions with their own separator embedding")
    end_marker: bool = Field(False, description="also append a learned end-of-image embedding")
