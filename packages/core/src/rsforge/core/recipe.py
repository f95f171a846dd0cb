"""Recipe: one YAML file = one model (+ its data and training). Validated before anything is built.

Errors carry the recipe path of the bad value, e.g. `bridges[1].num_queries: Input should be a
valid integer` or `encoder.name: unknown encoder 'vit'; known encoders: timm`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rsforge.core.configs import PartConfig
from rsforge.core.errors import RecipeError
from rsforge.core.registry import Registry
from rsforge.core.sample import Sample


class StageConfig(BaseModel):
    """One stage of a training run. `sft`: answer-only cross-entropy plus every head's loss; `mask`:
    the mask heads' losses only; `scst`: self-critical sequence training on the recipe's rewards, in one
    of two modes (`scst_mode`):

    - `rollout` (Rennie et al.'s SCST, as the InstructBLIP-SCST README describes it): K free multinomial
      rollouts per input, each rewarded minus the reward of the input's greedy decode;
    - `teacher_forced` (the InstructBLIP-SCST public code, `BaseTask.train_rl_step`): one forward pass
      teacher-forced on the sample's answer; at every answer position K tokens are drawn from its
      distribution and the argmax is the baseline; the advantage (sample - baseline) minus a running
      mean is standardised over the batch.

    Both score log-probs with dropout off, under `train.precision`."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["sft", "mask", "scst"] = "sft"
    epochs: int = Field(1, ge=1)
    lr: float | None = Field(None, gt=0, description="this stage's base learning rate; none: train.lr")
    scst_mode: Literal["rollout", "teacher_forced"] = Field(
        "rollout", description="scst: free rollouts against the greedy decode, or the seed code's samples from "
                               "teacher-forced logits against their argmax")
    num_samples: int = Field(5, ge=1, description="scst: rollouts per input (K), or samples per answer position")
    max_new_tokens: int = Field(24, ge=1, description="scst: rollout length (rollout mode)")
    temperature: float = Field(1.0, gt=0, description="scst: sampling temperature of the rollouts or samples")


class AugmentConfig(BaseModel):
    """`train.augment`: training-only random changes of each sample (evaluation never sees them). The
    geometric ones move both dates, the mask and boxes together; the photometric ones are drawn for each
    date on its own (two acquisitions never share their light). Flips and rotations swap left / right,
    north / south: keep them off for captions or answers that name directions."""

    model_config = ConfigDict(extra="forbid")

    hflip: float = Field(0.0, ge=0, le=1, description="probability of a left-right flip")
    vflip: float = Field(0.0, ge=0, le=1, description="probability of a top-bottom flip")
    rot90: bool = Field(False, description="rotate by 0, 90, 180 or 270 degrees, drawn uniformly")
    scale: tuple[float, float] | None = Field(
        None, description="[min, max] area fraction of a random square crop, resized to the model's input")
    brightness: float = Field(0.0, ge=0, description="colour jitter: brightness factor drawn in [1-b, 1+b]")
    contrast: float = Field(0.0, ge=0, description="colour jitter: contrast factor drawn in [1-c, 1+c]")
    saturation: float = Field(0.0, ge=0, description="colour jitter: saturation factor drawn in [1-s, 1+s]")
    hue: float = Field(0.0, ge=0, le=0.5, description="colour jitter: hue shift drawn in [-h, h]")
    gamma: tuple[float, float] | None = Field(None, description="[min, max] gamma drawn per date")
    blur: tuple[float, float] | None = Field(None, description="[min, max] Gaussian blur sigma in pixels")
    blur_p: float = Field(0.5, ge=0, le=1, description="probability that a date is blurred (with `blur`)")

    @field_validator("scale", "gamma", "blur")
    @classmethod
    def _range(cls, value: tuple[float, float] | None, info) -> tuple[float, float] | None:
        if value is not None and not 0 < value[0] <= value[1]:
            raise ValueError(f"expected [min, max] with 0 < min <= max, got {list(value)}")
        if value is not None and info.field_name == "scale" and value[1] > 1:
            raise ValueError(f"area fractions are at most 1, got {list(value)}")
        return value


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(3, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(0, ge=0)
    grad_clip: float | None = 1.0
    lm_loss_weight: float = 1.0
    seed: int = 0
    ray_workers: int = Field(1, ge=1, description="Ray Train workers (processes, one model replica each)")
    use_gpu: bool = False
    cpus_per_worker: int = Field(1, ge=1)
    checkpoint_every: int = Field(0, ge=0, description="steps between checkpoints; 0 = each epoch")
    max_failures: int = Field(0, ge=-1)
    stages: list[StageConfig] = Field(
        [], description="stages run in order; none: one sft stage of `epochs` epochs")
    lr_multipliers: dict[str, float] = Field(
        {}, description="part path prefix (encoder, bridges, bridges[1], decoder, heads[0]) -> factor on the lr; "
                        "the longest matching prefix wins, unmatched parameters keep 1.0")
    grad_accum_steps: int = Field(1, ge=1, description="micro-batches of `batch_size` per optimizer step")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="autocast dtype; fp16 needs CUDA (gradients are scaled)")
    keep_checkpoints: int = Field(2, ge=1, description="best checkpoints kept by `checkpoint_metric`")
    checkpoint_metric: Literal["loss", "val_loss"] = Field(
        "loss", description="lower is better: the mean train loss since the last checkpoint, or the loss on "
                            "the val split computed at checkpoint time")
    feature_cache: bool | str = Field(
        False, description="frozen encoder only: cache encoder outputs on disk (true: <run dir>/feature_cache, "
                           "or a directory shared between runs)")
    crop: int | None = Field(
        None, ge=1, description="side in native pixels of a random square crop taken at the same place in both "
                                "dates and the mask, then resized to the model's input; images smaller than it "
                                "are refused; none: each whole image resized")
    augment: AugmentConfig | None = Field(None, description="training-only augmentation; none: off")

    @model_validator(mode="after")
    def _cache_sees_fixed_pixels(self) -> TrainConfig:
        # The cache holds each image's encoder output computed once; new crops or draws every epoch would
        # make every cached feature describe pixels the step never saw.
        if self.feature_cache and (self.crop is not None or self.augment is not None):
            raise ValueError("train.feature_cache caches features of whole, unaugmented images; it cannot be "
                             "combined with train.crop or train.augment (turn the cache or those off)")
        return self


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    split: Literal["val", "test"] = "test"
    batch_size: int = Field(16, ge=1)
    max_new_tokens: int = Field(24, ge=1)
    num_beams: int = Field(1, ge=1, description="beam search width for text answers (1: greedy)")
    repetition_penalty: float = Field(1.0, gt=0, description="> 1 discourages repeating generated tokens (the "
                                      "default of served answers too)")
    length_penalty: float = Field(1.0, description="beam scores are divided by length ** this")
    panels: int = Field(4, ge=0, description="before/after/mask panels written to the report")
    mask_resolution: Literal["native", "model"] = Field(
        "native", description="native: change masks predicted and scored at each pair's own size, in blended "
        "tiles of the model's scale (as `rsforge detect` runs); model: pair and label resized to the input size")
    tile: int | None = Field(None, ge=1, description="native pixels per tile (default: train.crop, else the "
                             "model's input size)")
    overlap: int | None = Field(None, ge=0, description="pixels shared by neighbouring tiles (default: 32, at "
                                "most a quarter of the tile)")


SINGLE_PARTS = {"encoder": "encoder", "decoder": "decoder"}
LIST_PARTS = {"bridges": "bridge", "heads": "head", "rewards": "reward", "data": "dataset"}


class Recipe(BaseModel):
    """A validated recipe; part sections hold instances of each part's own config class."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: str = "model"
    encoder: PartConfig | None = Field(None, description="absent only when the decoder reads images itself")
    bridges: list[PartConfig] = []
    decoder: PartConfig | None = None
    heads: list[PartConfig] = []
    rewards: list[PartConfig] = []
    data: list[PartConfig] = Field([], description="datasets; several make a mixture weighted by `weight`")
    prompts: dict[str, str] = Field({}, description="task -> prompt text, overriding the built-in prompts")
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    source: str | None = Field(None, exclude=True, description="file the recipe came from")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        for key in ("encoder", "decoder"):
            part = getattr(self, key)
            if part is not None:
                out[key] = part.model_dump(mode="json")
        for key in LIST_PARTS:
            parts = getattr(self, key)
            if parts:
                out[key] = [p.model_dump(mode="json") for p in parts]
        if self.prompts:
            out["prompts"] = dict(self.prompts)
        out["train"] = self.train.model_dump(mode="json")
        out["eval"] = self.eval.model_dump(mode="json")
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def prepared(self, corpus: Iterable[str], samples: Sequence[Sample] = ()) -> Recipe:
        """The recipe with every part completed from the training texts (`corpus`) and, for heads, from
        the training `samples` themselves (a classifier's class list); an error names the head."""
        texts = list(corpus)
        heads = []
        for i, head in enumerate(self.heads):
            try:
                heads.append(head.prepare(texts).prepare_samples(samples))
            except ValueError as exc:
                raise RecipeError(f"heads[{i}] ({head.name}): {exc}") from None
        update: dict[str, Any] = {
            "encoder": self.encoder.prepare(texts) if self.encoder is not None else None,
            "bridges": [b.prepare(texts) for b in self.bridges],
            "heads": heads,
        }
        if self.decoder is not None:
            update["decoder"] = self.decoder.prepare(texts)
        return self.model_copy(update=update)


def _format_loc(prefix: str, loc: tuple) -> str:
    path = prefix
    for item in loc:
        path += f"[{item}]" if isinstance(item, int) else (f".{item}" if path else str(item))
    return path


def _validate_part(registry: Registry, kind: str, raw: Any, path: str) -> PartConfig:
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: expected a mapping with a 'name' key, got {type(raw).__name__}")
    if "name" not in raw:
        raise RecipeError(f"{path}.name: missing; every part needs the name of a registered {kind}")
    spec = registry.get(kind, raw["name"], path=f"{path}.name")
    try:
        return spec.config.model_validate(raw)
    except ValidationError as exc:
        raise RecipeError(_validation_message(exc, path)) from None


def _validation_message(exc: ValidationError, path: str) -> str:
    lines = []
    for err in exc.errors():
        where = _format_loc(path, err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key")
        else:
            lines.append(f"{where}: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(lines)


def parse_recipe(raw: Any, registry: Registry, *, source: str | None = None) -> Recipe:
    if not isinstance(raw, dict):
        raise RecipeError(f"{source or 'recipe'}: the top level must be a mapping")
    known = {"name", "train", "eval", "prompts", *SINGLE_PARTS, *LIST_PARTS}
    for key in raw:
        if key not in known:
            raise RecipeError(f"{key}: unknown top-level key; known keys: {', '.join(sorted(known))}")
    values: dict[str, Any] = {"source": source}
    if "name" in raw:
        values["name"] = raw["name"]
    for key, kind in SINGLE_PARTS.items():
        if raw.get(key) is not None:
            values[key] = _validate_part(registry, kind, raw[key], key)
    if raw.get("prompts") is not None:
        prompts = raw["prompts"]
        if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
            raise RecipeError("prompts: expected a mapping of task name -> prompt text")
        values["prompts"] = {str(k): v for k, v in prompts.items()}
    for key, kind in LIST_PARTS.items():
        items = raw.get(key) or []
        if key == "data" and isinstance(items, dict):  # one dataset needs no list
            items = [items]
        if not isinstance(items, list):
            raise RecipeError(f"{key}: expected a list of parts, got {type(items).__name__}")
        values[key] = [_validate_part(registry, kind, item, f"{key}[{i}]") for i, item in enumerate(items)]
    for key, model in (("train", TrainConfig), ("eval", EvalConfig)):
        if raw.get(key) is not None:
            try:
                values[key] = model.model_validate(raw[key])
            except ValidationError as exc:
                raise RecipeError(_validation_message(exc, key)) from None
    return Recipe(**values)


RECIPE_DIR = "${recipe_dir}"


def expand_recipe_dir(raw: Any, directory: Path) -> Any:
    """`${recipe_dir}` in any string of the recipe -> the absolute folder that holds the recipe file, so a
    model folder (a converted checkpoint: its LM, vision tower, tokenizers beside `recipe.yaml`) can move."""
    if isinstance(raw, str):
        return raw.replace(RECIPE_DIR, str(directory.resolve()))
    if isinstance(raw, dict):
        return {k: expand_recipe_dir(v, directory) for k, v in raw.items()}
    if isinstance(raw, list):
        return [expand_recipe_dir(v, directory) for v in raw]
    return raw


def load_recipe(path: str | Path, registry: Registry) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: recipe file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from None
    try:
        return parse_recipe(expand_recipe_dir(raw, path.parent), registry, source=str(path))
    except RecipeError as exc:
        raise RecipeError(f"{path}: {exc}") from None
