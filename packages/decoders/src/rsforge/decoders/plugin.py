from rsforge.core.hookspecs import hookimpl
from rsforge.decoders.configs import HFCausalLMConfig


@hookimpl
def register_decoders(register):
    register("hf_causal_lm", factory="rsforge.decoders.hf_causal_lm:HFCausalLM", config=HFCausalLMConfig,
             description="any transformers AutoModelForCausalLM, from a local path/hub name or a config")
