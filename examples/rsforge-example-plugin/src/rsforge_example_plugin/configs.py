from pydantic import Field

from rsforge.core.configs import BridgeConfig


class TokenPoolerConfig(BridgeConfig):
    grid: int = Field(4, ge=1, description="output tokens per side: grid x grid tokens per image")
