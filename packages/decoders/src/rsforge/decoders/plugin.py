from rsforge.core.hookspecs import hookimpl

TINY_VOCAB = ["<pad>", "<unk>", "<s>", "</s>", ":", "a", "assistant", "building", "new", "user"]


@hookimpl
def register_decoders(register):
    register("hf_causal_lm", factory="rsforge.decoders.hf_causal_lm:HFCausalLM",
             config="rsforge.decoders.configs:HFCausalLMConfig",
             description="any transformers AutoModelForCausalLM (frozen, trainable or LoRA), from a path or a config",
             example={"tokenizer": "word_level", "vocab": TINY_VOCAB,
                      "config": {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
                                 "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
                                 "max_position_embeddings": 64}})
    register("hf_seq2seq_lm", factory="rsforge.decoders.hf_seq2seq_lm:HFSeq2SeqLM",
             config="rsforge.decoders.configs:HFSeq2SeqLMConfig",
             description="any transformers AutoModelForSeq2SeqLM (T5 / FlanT5): visual tokens and prompt in the "
                         "encoder, the answer from the decoder, as InstructBLIP-FlanT5",
             example={"tokenizer": "word_level", "vocab": TINY_VOCAB,
                      "config": {"model_type": "t5", "d_model": 32, "d_ff": 64, "num_layers": 1,
                                 "num_decoder_layers": 1, "num_heads": 2, "d_kv": 16}})
    register("hf_vlm", factory="rsforge.decoders.hf_vlm:HFVLM", config="rsforge.decoders.configs:HFVLMConfig",
             description="a transformers image-text-to-text model (Qwen2-VL class) reading 1-2 images itself",
             example={"tokenizer": "word_level", "vocab": TINY_VOCAB, "image_size": 16, "num_images": 2,
                      "config": {"model_type": "qwen2_vl",
                                 "text_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                                 "num_attention_heads": 2, "num_key_value_heads": 2,
                                                 "max_position_embeddings": 128,
                                                 "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                                                     "mrope_section": [2, 3, 3]}},
                                 "vision_config": {"depth": 1, "embed_dim": 32, "hidden_size": 32, "num_heads": 2,
                                                   "patch_size": 4, "spatial_merge_size": 2,
                                                   "temporal_patch_size": 2}}})
