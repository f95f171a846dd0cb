"""Vision encoders for rsforge: images (B, C, H, W) -> tokens (B, N, D) + feature maps.

Configs only: importing this module imports neither torch nor a backend (the registry reads it
when plugins load)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from rsforge.core.configs import EncoderConfig

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class VisionTowerConfig(EncoderConfig):
    """Options shared by the single-tower encoders (timm, hf_vision)."""

    in_chans: int = Field(3, ge=1, description="input bands, e.g. 13 for Sentinel-2")
    mean: list[float] | None = Field(None, description="per-band mean; as many values as in_chans")
    std: list[float] | None = Field(None, description="per-band std; as many values as in_chans")
    stem_adaptation: Literal["repeat", "none"] = Field(
        "repeat",
        description="how a weights file with another band count meets in_chans: 'repeat' cycles the "
        "RGB filters of the stem and rescales them by 3/in_chans (timm's adapt_input_conv); 'none' "
        "treats it as a shape mismatch",
    )
    map_layers: list[int] | None = Field(
        None, description="indices (negative from the end) of the blocks/stages whose outputs become maps"
    )
    freeze: bool = Field(False, description="freeze the whole tower")
    trainable_blocks: int | None = Field(
        None, ge=0, description="train only the last N blocks (and what follows them, the final norm); freeze the rest"
    )
    keep_prefix_tokens: bool = Field(
        False, description="keep class/register tokens in front of the patch tokens (BLIP-2 reads all 257 EVA tokens)"
    )
    strict_load: bool = Field(
        True, description="weights that do not fit exactly are an error; false loads what fits and reports the rest"
    )

    @model_validator(mode="after")
    def _one_value_per_band(self) -> VisionTowerConfig:
        for key in ("mean", "std"):
            value = getattr(self, key)
            if value is not None and len(value) != self.in_chans:
                raise ValueError(f"{key} has {len(value)} values but in_chans is {self.in_chans}; give one per band")
        return self


class TimmEncoderConfig(VisionTowerConfig):
    model_name: str = "vit_base_patch16_224"
    pretrained: bool | str = Field(
        False, description="False: random init; True: timm's hub weights; a path: local .safetensors/.pth/.bin file"
    )
    model_kwargs: dict[str, Any] = Field(default_factory=dict, description="passed to timm.create_model")
    num_maps: int | None = Field(None, ge=1, description="shorthand for map_layers: the last N stages/blocks")
    mean: list[float] | None = Field(IMAGENET_MEAN, description="per-band mean; as many values as in_chans")
    std: list[float] | None = Field(IMAGENET_STD, description="per-band std; as many values as in_chans")

    @model_validator(mode="after")
    def _check(self) -> TimmEncoderConfig:
        if self.num_maps is not None and self.map_layers is not None:
            raise ValueError("give either num_maps or map_layers, not both")
        if self.mean is None or self.std is None:
            raise ValueError("mean and std: a timm encoder needs both (one value per band)")
        if self.pretrained is True and self.in_chans != 3 and self.stem_adaptation == "none":
            raise ValueError("stem_adaptation: timm adapts hub weights to in_chans itself ('repeat'); "
                             "'none' needs a weights file with in_chans bands")
        return self

    @property
    def layers(self) -> list[int]:
        """The map layers asked for (negative from the end); `num_maps: N` means the last N."""
        if self.map_layers is not None:
            return list(self.map_layers)
        return list(range(-(self.num_maps or 1), 0))


class HFVisionConfig(VisionTowerConfig):
    """A Hugging Face vision tower (CLIP, SigLIP, DINOv2, ...).

    `pretrained`: a local directory written by `save_pretrained` or a hub name (config + weights);
    or a weights file (.safetensors/.pth/.bin) for the architecture in `config`.
    `config`: a transformers config as a dict with `model_type` (random init, or the
    architecture of a weights file). `mean`/`std` left out come from the directory's
    `preprocessor_config.json`, else ImageNet's."""

    pretrained: str | None = None
    config: dict[str, Any] | None = Field(None, description="transformers config dict with model_type")
    final_norm: bool = Field(
        True, description="false: leave out the tower's post_layernorm (LAVIS's EVA-ViT-g has none: its BLIP-2 "
        "norms the tokens with ln_vision, the Q-Former's memory norm)")

    @model_validator(mode="after")
    def _check(self) -> HFVisionConfig:
        is_file = self.pretrained is not None and self.pretrained.endswith((".safetensors", ".pth", ".bin"))
        if self.pretrained is None and self.config is None:
            raise ValueError("pretrained or config: hf_vision needs one (a directory/hub name, or a config)")
        if self.config is not None and self.pretrained is not None and not is_file:
            raise ValueError("config: give it with a weights file, not with a pretrained directory/hub name")
        if is_file and self.config is None:
            raise ValueError(f"config: needed to build the tower that {self.pretrained} is loaded into")
        if self.config is not None and "model_type" not in self.config:
            raise ValueError("config.model_type: missing (e.g. clip_vision_model, siglip_vision_model, dinov2)")
        return self


def _tower_name(value: Any) -> str | None:
    return value.get("name") if isinstance(value, dict) else getattr(value, "name", None)


SubEncoderConfig = Annotated[
    Annotated[TimmEncoderConfig, Tag("timm")] | Annotated[HFVisionConfig, Tag("hf_vision")],
    Discriminator(_tower_name),
]


class DualEncoderConfig(EncoderConfig):
    """Two (or more) towers on the same image, each projected to `out_dim`, fused per patch.

    Each tower sees the image resized to its own `image_size`; its patch grid is resampled
    (bilinear) to `grid_size` (default: the first tower's grid). Maps: every tower's, in order."""

    encoders: list[SubEncoderConfig] = Field(min_length=2, description="tower configs, each named timm or hf_vision")
    out_dim: int = Field(ge=1, description="width each tower is projected to")
    fusion: Literal["sum", "concat"] = Field(
        "sum", description="sum: tokens of width out_dim; concat: width out_dim x number of towers"
    )
    grid_size: int | None = Field(None, ge=1, description="side of the fused token grid (default: first tower's)")

    @model_validator(mode="after")
    def _check(self) -> DualEncoderConfig:
        for i, tower in enumerate(self.encoders):
            if tower.keep_prefix_tokens:
                raise ValueError(f"encoders[{i}].keep_prefix_tokens: the dual encoder fuses patch grids only")
        bands = {tower.in_chans for tower in self.encoders}
        if len(bands) > 1:
            raise ValueError(f"encoders[*].in_chans: the towers read the same image, got {sorted(bands)} bands")
        return self
