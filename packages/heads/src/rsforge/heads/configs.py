from collections.abc import Sequence
from typing import Literal, Self

from pydantic import Field, model_validator

from rsforge.core.configs import HeadConfig
from rsforge.core.sample import DEFAULT_MASK_PROMPT, META_CANDIDATES, META_LABEL, Sample


class MaskLossConfig(HeadConfig):
    """Loss options shared by the mask heads: weighted BCE (CE for K classes) + Dice + Focal."""

    num_classes: int = Field(1, ge=1, description="1: binary change (sigmoid); K > 1: semantic change (softmax)")
    bce_weight: float = Field(1.0, ge=0, description="weight of BCE (binary) or cross-entropy (K classes)")
    dice_weight: float = Field(1.0, ge=0)
    focal_weight: float = Field(0.0, ge=0)
    focal_gamma: float = Field(2.0, ge=0)
    pos_weight: float | None = Field(None, gt=0, description="BCE/Focal weight of changed pixels (rare-class boost)")
    class_weights: list[float] | None = Field(None, description="K > 1: CE/Focal weight per class")

    @model_validator(mode="after")
    def _check_weights(self) -> Self:
        if self.class_weights is not None and len(self.class_weights) != self.num_classes:
            raise ValueError(f"class_weights has {len(self.class_weights)} entries for num_classes={self.num_classes}")
        if self.pos_weight is not None and self.num_classes > 1:
            raise ValueError("pos_weight is for binary masks; use class_weights with num_classes > 1")
        return self


class ChangeMaskHeadConfig(MaskLossConfig):
    hidden: int = Field(32, ge=1, description="channels of the fusion/upsampling path")
    decoder: Literal["sum", "fpn"] = Field(
        "sum", description="sum: every scale's fusion added at the finest scale; fpn: top-down path, coarse to "
        "fine, each step adding the next scale's lateral 1x1 conv and smoothing with a 3x3 conv")
    product: bool = Field(False, description="also fuse f0 * f1 (SegChange-R1's [f0, f1, |f1 - f0|, f0 * f1])")


class TextMaskHeadConfig(ChangeMaskHeadConfig):
    decoder: Literal["sum", "fpn"] = "fpn"
    text_encoder: str | None = Field(
        None, description="local path (or hub name) of a Hugging Face text encoder, frozen; none: a learned "
        "embedding of the prompt's hashed words")
    text_dim: int = Field(32, ge=1, description="width of the learned word embedding (no text_encoder)")
    vocab_buckets: int = Field(4096, ge=1, description="hash buckets of the learned word embedding")
    max_text_tokens: int = Field(32, ge=1)
    num_queries: int = Field(8, ge=1, description="learned queries that attend to the prompt")
    num_heads: int = Field(4, ge=1)
    default_prompt: str = Field(DEFAULT_MASK_PROMPT, description="used when a caller passes no prompt (the "
                                "prompt mask readers give samples without one of their own)")
    cache_size: int = Field(4096, ge=1, description="distinct prompts whose embeddings are kept")

    @model_validator(mode="after")
    def _check_heads(self) -> Self:
        if self.hidden % self.num_heads:
            raise ValueError(f"hidden={self.hidden} must be divisible by num_heads={self.num_heads}")
        return self


class TokenMaskHeadConfig(MaskLossConfig):
    in_dim: int | None = Field(None, ge=1, description="width of the bridged tokens (filled by the assembler)")
    hidden: int = Field(32, ge=1)
    prefix_tokens: int = Field(0, ge=0, description="leading non-patch tokens (class/register) to drop")
    use_maps: bool = Field(False, description="also add the encoder maps of both dates on an FPN top-down path")
    product: bool = False

    def reads_bridged_tokens(self) -> bool:
        return True


class ClassifierHeadConfig(HeadConfig):
    """`classes`: the class names in id order, filled from the training samples (`prepare_samples`) and
    saved with the model, so a class id means the same name in training, evaluation and serving."""

    in_dim: int | None = Field(None, ge=1, description="token width (filled by the assembler from what it pools)")
    num_classes: int = Field(ge=2)
    classes: list[str] | None = Field(None, description="class names by id; none: taken from the training data")
    hidden: int | None = Field(None, ge=1, description="one hidden layer (GELU) before the classifier; none: linear")
    bridged: bool = Field(False, description="pool the bridged tokens instead of the encoder's")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    class_weights: list[float] | None = None

    def reads_bridged_tokens(self) -> bool:
        return self.bridged

    @model_validator(mode="after")
    def _check_weights(self) -> Self:
        if self.class_weights is not None and len(self.class_weights) != self.num_classes:
            raise ValueError(f"class_weights has {len(self.class_weights)} entries for num_classes={self.num_classes}")
        if self.classes is not None and len(self.classes) != self.num_classes:
            raise ValueError(f"classes names {len(self.classes)} classes for num_classes={self.num_classes}")
        return self

    def prepare_samples(self, samples: Sequence[Sample]) -> Self:
        """The class list of the labelled training samples (`meta["label"]` indexes their `candidates`).
        All of them must share one list, since a label is an index into it, and it must have
        `num_classes` names (and be `classes`, where the recipe gives them)."""
        lists: dict[tuple[str, ...], str] = {}  # class list -> the first sample that has it
        for sample in samples:
            if META_LABEL in sample.meta:
                lists.setdefault(tuple(sample.meta.get(META_CANDIDATES) or ()), sample.id)
        if not lists:
            return self
        if len(lists) > 1:
            shown = "; ".join(f"{len(names)} classes in sample {sid}" for names, sid in lists.items())
            raise ValueError(f"the training samples carry different class lists ({shown}); one {self.name} head "
                             "needs one list, since a label is an index into it")
        found = list(next(iter(lists)))
        if len(found) != self.num_classes:
            raise ValueError(f"num_classes is {self.num_classes} but the training data has {len(found)} classes "
                             f"({', '.join(found)})")
        if self.classes is not None and self.classes != found:
            raise ValueError(f"classes {self.classes} differ from the training data's classes {found} (order "
                             "included: a label is an index)")
        return self.model_copy(update={"classes": found})
