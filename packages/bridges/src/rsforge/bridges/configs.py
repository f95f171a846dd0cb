from typing import Literal

from pydantic import Field

from rsforge.core.config import BridgeConfig


class DifferenceBridgeConfig(BridgeConfig):
    fusion: Literal["concat_diff", "diff"] = Field(
        "concat_diff", description="concat_diff: Linear([t0; t1; t1 - t0]); diff: Linear(t1 - t0)"
    )


class MLPProjectorConfig(BridgeConfig):
    depth: int = Field(2, ge=1, description="number of Linear layers, GELU between them")
