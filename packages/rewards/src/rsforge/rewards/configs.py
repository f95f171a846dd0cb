"""Reward configs. Pydantic only: importing them must not import torch.

Every reward config has `weight` (its share of the combined reward, or for a logit regulariser the
factor of its loss term) and `normalise`/`norm_momentum` (the running normalisation the trainer's
`RewardSet` applies; see `rsforge.core.configs.RewardConfig`).
"""

from typing import Literal

from pydantic import Field

from rsforge.core.configs import RewardConfig


class CiderDConfig(RewardConfig):
    n: int = Field(4, ge=1, description="longest n-gram; scores average the 1..n-gram similarities")
    sigma: float = Field(6.0, gt=0, description="std of the Gaussian penalty on the length difference")


class BleuConfig(RewardConfig):
    n: int = Field(4, ge=1, le=4, description="BLEU-n: the geometric mean of the 1..n-gram precisions")


class RougeLConfig(RewardConfig):
    beta: float = Field(1.2, gt=0, description="recall weight of the LCS F-measure (pycocoevalcap: 1.2)")


class MeteorConfig(RewardConfig):
    java: str = Field("java", description="the Java executable (Java 8 or newer) that runs meteor-1.5.jar")
    memory: str = Field("2G", pattern=r"^\d+[mMgG]$", description="the JVM's -Xmx heap size")


class LengthConfig(RewardConfig):
    target: Literal["closest", "mean"] | int = Field(
        "closest", description="the length aimed at: the closest reference's, the references' mean, or a "
                               "fixed number of words")
    sigma: float = Field(3.0, gt=0, description="words off target at which the reward falls to exp(-1/2)")


class ObjectsConfig(RewardConfig):
    synonyms: dict[str, list[str]] = Field(
        {}, description="extra object classes or words: class -> words naming it (singular), merged into "
                        "the built-in remote-sensing vocabulary")


class SDEConfig(ObjectsConfig):
    no_objects: float = Field(
        1.0, ge=0, le=1, description="reward when the references name no object and the candidate names none "
                                     "either (a candidate naming objects then gets 0)")


class CountingConfig(ObjectsConfig):
    pass


class NKLConfig(RewardConfig):
    smoothing: float = Field(0.1, gt=0, lt=1, description="weight of the uniform distribution mixed into both word "
                                                          "distributions (keeps the KL finite)")
    form: Literal["exp", "neg"] = Field(
        "exp", description="exp: exp(-KL) in (0, 1]; neg: -KL in (-inf, 0]; both are highest for identical "
                           "distributions")


class MaskIoUConfig(RewardConfig):
    threshold: float = Field(0.5, gt=0, lt=1, description="probability above which a predicted pixel changed")
    from_logits: bool = Field(True, description="extras['pred_masks'] are logits (sigmoid first), else probabilities")
    empty: float = Field(1.0, ge=0, le=1, description="IoU when both masks are empty")


class VarentropyConfig(RewardConfig):
    mode: Literal["varentropy", "entropy", "ratio"] = Field(
        "varentropy", description="per-token varentropy, entropy, or varentropy / entropy, averaged over the "
                                  "tokens of each sequence")
