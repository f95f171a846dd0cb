"""Tiny decoders the tests build in milliseconds: a random one-layer Llama with a word-level vocabulary."""

import pytest
import torch

from rsforge.decoders.configs import HFCausalLMConfig
from rsforge.decoders.hf_causal_lm import HFCausalLM

CORPUS = ["a new building was built", "there is no change", "describe the changes"]
LLAMA = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
         "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 64}


@pytest.fixture
def tiny():
    """tiny(**config fields) -> a random HFCausalLM (hidden 32, context 64), the same for the same fields."""

    def build(**extra) -> HFCausalLM:
        config = HFCausalLMConfig(name="hf_causal_lm", tokenizer="word_level", config=dict(LLAMA), **extra)
        torch.manual_seed(0)
        return HFCausalLM(config.prepare(CORPUS))

    return build
