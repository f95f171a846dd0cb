"""Typed part configs. Every part's config derives from `PartConfig`; unknown keys are errors."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rsforge.core.sample import Sample


class PartConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str

    def prepare(self, corpus: Iterable[str]) -> Self:
        """Return a config completed from the training texts (a part that learns a vocabulary
        does it here, so the saved recipe fully describes the part). Default: unchanged."""
        return self


class EncoderConfig(PartConfig):
    """Encoders read images of `image_size` pixels, already scaled to [0, 1]; they normalise.
    `interpolation` is how the data loader should resize images to `image_size` (the filter the
    encoder was trained with)."""

    image_size: int = 224
    interpolation: Literal["bilinear", "bicubic", "nearest"] = "bilinear"


class BridgeConfig(PartConfig):
    """`in_dim` / `out_dim` may be left out: the assembler fills them from the neighbours
    (the upstream part's width, and for the last bridge the decoder's hidden size)."""

    in_dim: int | None = None
    out_dim: int | None = None


class DecoderConfig(PartConfig):
    pass


class HeadConfig(PartConfig):
    """`in_channels` (per encoder map) is filled by the assembler; `weight` scales the head's loss."""

    in_channels: list[int] | None = None
    weight: float = 1.0

    def reads_bridged_tokens(self) -> bool:
        """Whether the head reads the tokens after the bridge chain (else the encoder's). A config
        with an `in_dim` field gets that width filled in, or checked, by the assembler."""
        return False

    def prepare_samples(self, samples: Sequence[Sample]) -> Self:
        """Return a config completed from the training samples' targets (a classifier fixes its class
        list here, so the saved model maps class ids to the names it was trained on). Default: unchanged."""
        return self


class RewardConfig(PartConfig):
    """`weight`: the reward's factor in the combined reward (a logit regulariser's: of its loss term);
    unset: 1/N for a `minmax` reward (the InstructBLIP-SCST seed's uniform weights over the recipe's N
    text rewards), else 1. `normalise`: how the trainer scales the raw reward before weighting, with
    running statistics that all workers share and checkpoints keep: `zscore` standardises it with the
    running mean and std (Welford's over every score seen, or an EMA with `norm_momentum`, the weight of
    the newest batch); `minmax` maps it to [0, 1] with the running min and max (the seed's; 0 while they
    are equal); `none` keeps it raw. Regularisers are never normalised."""

    weight: float | None = None
    normalise: Literal["zscore", "minmax", "none"] = "zscore"
    norm_momentum: float | None = Field(None, gt=0, le=1)

    @model_validator(mode="after")
    def _momentum_needs_zscore(self) -> Self:
        if self.norm_momentum is not None and self.normalise != "zscore":
            raise ValueError(f"norm_momentum: only `normalise: zscore` keeps a running mean to average; this "
                             f"reward's normalise is {self.normalise}")
        return self


class DatasetConfig(PartConfig):
    """`weight`: this dataset's share of the training mixture when a recipe lists several. `splits`: which
    of the dataset's own splits serves a recipe split (`{train: test}` trains on its test list), null for
    none (`{test: null}`: the dataset adds nothing to evaluation); unnamed splits read themselves."""

    weight: float = Field(1.0, gt=0)
    splits: dict[Literal["train", "val", "test"], str | None] = {}


class TaskConfig(PartConfig):
    """Tasks take no options yet; the class keeps every kind of registered thing alike."""
