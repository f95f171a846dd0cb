"""Reward configs. Pydantic only: importing them (at registration) must not import torch."""

from pydantic import Field

from rsforge.core.config import RewardConfig


class CiderDConfig(RewardConfig):
    n: int = Field(4, ge=1, description="longest n-gram; scores average the 1..n-gram similarities")
    sigma: float = Field(6.0, gt=0, description="std of the Gaussian penalty on the length difference")
