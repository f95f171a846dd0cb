from rsforge.core.hookspecs import hookimpl


@hookimpl
def register_bridges(register):
    register("difference", factory="rsforge.bridges.difference:DifferenceBridge",
             config="rsforge.bridges.configs:DifferenceBridgeConfig",
             description="bi-temporal fusion of [t0, t1, t1-t0] per token (T: 2 -> 1)",
             example={"in_dim": 32})
    register("mlp_projector", factory="rsforge.bridges.mlp_projector:MLPProjector",
             config="rsforge.bridges.configs:MLPProjectorConfig",
             description="LLaVA-style MLP from visual width to decoder width",
             example={"in_dim": 32, "out_dim": 48})
    register("difference_perception", factory="rsforge.bridges.difference_perception:DifferencePerception",
             config="rsforge.bridges.configs:DifferencePerceptionConfig",
             description="DeltaVLM IDPM/CSRM: gated, context-filtered difference per date; tokens of both dates "
                         "in one sequence (T: 2 -> 1, 2N tokens)",
             example={"in_dim": 32, "dropout": 0.1})
    register("qformer", factory="rsforge.bridges.qformer:QFormer", config="rsforge.bridges.configs:QFormerConfig",
             description="InstructBLIP instruction-aware Q-Former: learned queries + instruction text, queries "
                         "cross-attend to the image tokens -> num_queries tokens",
             example={"in_dim": 32, "out_dim": 48, "num_queries": 4, "hidden_size": 32, "num_layers": 2,
                      "num_heads": 2, "intermediate_size": 64, "vocab_size": 64, "max_instruction_tokens": 16,
                      "max_position_embeddings": 32})
    register("attention_pooler", factory="rsforge.bridges.attention_pooler:AttentionPooler",
             config="rsforge.bridges.configs:AttentionPoolerConfig",
             description="AerithVLM/LHRS-Bot perceiver: learned queries read encoder levels stage by stage "
                         "-> num_queries tokens per image",
             example={"in_dim": 32, "out_dim": 48, "num_queries": 4, "num_layers": 3, "num_heads": 2,
                      "hidden": 16, "map_channels": [24, 32]})
    register("bev_alignment", factory="rsforge.bridges.bev_alignment:BEVAlignment",
             config="rsforge.bridges.configs:BEVAlignmentConfig",
             description="SegChange-R1 BEV: per-scale linear attention aligns both dates' maps; difference "
                         "tokens from the coarsest scale (T: 2 -> 1)",
             example={"in_dim": 32, "out_dim": 48, "map_channels": [16, 24], "heads": 2, "key_dim": 8})
    register("image_separators", factory="rsforge.bridges.image_separators:ImageSeparators",
             config="rsforge.bridges.configs:ImageSeparatorsConfig",
             description="multi-image layout: a learned per-image separator (+ end marker) around each image's tokens",
             example={"in_dim": 32, "max_images": 2, "end_marker": True})
