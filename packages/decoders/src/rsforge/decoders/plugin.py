from rsforge.core.hookspecs import hookimpl
from rsforge.decoders.configs import HFCausalLMConfig


@hookimpl
def register_decoders(register):
    register("hf_causal_lm", factory="rsforge.decoders.hf_causal_lm:HFCausalLM", config=HFCausalLMConfig,
             description="any transformers AutoModelForCausalLM, from a local path/hub name or a config",
             example={"tokenizer": "word_level", "vocab": ["<pad>", "<unk>", "<s>", "</s>", ":", "a", "assistant",
                                                         "building", "new", "user"],
                      "config": {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
                                 "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
                                 "max_position_embeddings": 64}})
