from pydantic import Field

from rsforge.core.config import HeadConfig


class ChangeMaskHeadConfig(HeadConfig):
    hidden: int = Field(32, ge=1, description="channels of the fusion/upsampling path")
    num_classes: int = Field(1, ge=1, description="1: binary change (sigmoid); K > 1: semantic change (softmax)")
    bce_weight: float = Field(1.0, ge=0)
    dice_weight: float = Field(1.0, ge=0)
    pos_weight: float | None = Field(None, gt=0, description="BCE weight of changed pixels (rare-class boost)")
