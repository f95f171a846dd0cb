from typing import Any

from pydantic import Field

from rsforge.core.config import EncoderConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TimmEncoderConfig(EncoderConfig):
    model_name: str = "vit_base_patch16_224"
    pretrained: bool | str = Field(
        False, description="False: random init; True: timm's hub weights; a path: local .safetensors/.pth file"
    )
    model_kwargs: dict[str, Any] = Field(default_factory=dict, description="passed to timm.create_model")
    num_maps: int = Field(1, ge=1, description="feature maps exposed to heads: the last N stages/blocks")
    freeze: bool = False
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
