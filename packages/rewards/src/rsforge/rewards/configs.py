"""Reward configs. Pydantic only: importing them must not import torch.

Every reward config has `weight` (its share of the combined reward, or for a logit regulariser the
factor of its loss term) and `normalise`/`norm_momentum` (the running normalisation the trainer's
`RewardSet` applies; see `rsforge.core.configs.RewardConfig`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

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
    mode: Literal["tokens", "negative_bytes"] = Field(
        "tokens", description="`tokens`: the caption's number of tokens (the seed README); `negative_bytes`: minus "
                              "its UTF-8 byte length (the seed's public code, `length_penalization`)")


class LengthTargetConfig(RewardConfig):
    target: Literal["closest", "mean"] | int = Field(
        "closest", description="the length aimed at: the closest reference's, the references' mean, or a "
                               "fixed number of words")
    sigma: float = Field(3.0, gt=0, description="words off target at which the reward falls to exp(-1/2)")


class ObjectsConfig(RewardConfig):
    vocabulary: str | None = Field(
        None, description="a JSON object vocabulary {'classes': {class: [synonyms]}} replacing the built-in one "
                          "(rsforge/rewards/data/objects.json: RSICD, UCM-Captions and VRSBench objects)")
    synonyms: dict[str, list[str]] = Field(
        {}, description="extra object classes or words: class -> words naming it (singular), merged into "
                        "the vocabulary")


class SDEConfig(ObjectsConfig):
    pass


class ObjectCoverageConfig(ObjectsConfig):
    no_objects: float = Field(
        1.0, ge=0, le=1, description="reward when the references name no object and the candidate names none "
                                     "either (a candidate naming objects then gets 0)")


class CountingConfig(ObjectsConfig):
    pass


class WordKLConfig(RewardConfig):
    smoothing: float = Field(0.1, gt=0, lt=1, description="weight of the uniform distribution mixed into both word "
                                                          "distributions (keeps the KL finite)")
    form: Literal["exp", "neg"] = Field(
        "exp", description="exp: exp(-KL) in (0, 1]; neg: -KL in (-inf, 0]; both are highest for identical "
                           "distributions")


class NKLConfig(RewardConfig):
    model: str | None = Field(
        None, description="the embedding model: a local directory or hub name that transformers' AutoModel and "
                          "AutoTokenizer load (an encoder such as a small BERT, or a decoder such as GPT-2)")
    config: dict[str, Any] | None = Field(
        None, description="instead of `model`: a transformers config (with model_type) built with random weights "
                          "and a word-level tokenizer over `vocab`; for contract checks, its embeddings mean nothing")
    vocab: list[str] | None = Field(None, description="the words of the word-level tokenizer `config` needs")
    window: int = Field(10_000, ge=1, description="token embeddings kept per distribution: the last `window` of the "
                                                  "generated and of the reference captions")
    refresh: int = Field(10_000, ge=1, description="generated tokens between two refits of the distributions")
    device: str = Field("cpu", description="torch device the embedding model runs on")
    batch_size: int = Field(64, ge=1, description="captions per forward pass of the embedding model")

    @model_validator(mode="after")
    def _one_source(self) -> NKLConfig:
        if (self.model is None) == (self.config is None):
            raise ValueError("nkl: give exactly one of `model` (a path or hub name) and `config`")
        if self.config is not None and "model_type" not in self.config:
            raise ValueError("nkl: `config` needs a model_type (e.g. bert, gpt2)")
        if self.config is not None and not self.vocab:
            raise ValueError("nkl: a model built from `config` needs `vocab`, the words of its tokenizer")
        return self


class MaskIoUConfig(RewardConfig):
    threshold: float = Field(0.5, gt=0, lt=1, description="probability above which a predicted pixel changed")
    from_logits: bool = Field(True, description="extras['pred_masks'] are logits (sigmoid first), else probabilities")
    empty: float = Field(1.0, ge=0, le=1, description="IoU when both masks are empty")


class VarentropyConfig(RewardConfig):
    mode: Literal["entropy_variance_ratio", "varentropy", "entropy", "ratio"] = Field(
        "entropy_variance_ratio",
        description="entropy_variance_ratio (the seed's V/E): the variance of the token entropies over the batch's "
                    "tokens divided by their mean; or per-token varentropy, entropy, or varentropy / entropy, "
                    "averaged over the tokens of each sequence")
