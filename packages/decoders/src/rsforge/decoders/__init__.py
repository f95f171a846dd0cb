"""Language-model decoders for rsforge: Hugging Face causal LMs reading visual tokens."""
