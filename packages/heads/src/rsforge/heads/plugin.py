from rsforge.core.hookspecs import hookimpl


@hookimpl
def register_heads(register):
    register("change_mask", factory="rsforge.heads.change_mask:ChangeMaskHead",
             config="rsforge.heads.configs:ChangeMaskHeadConfig",
             description="per-scale difference fusion, summed or FPN top-down -> change logits (BCE + Dice + Focal)",
             example={"in_channels": [16, 24], "hidden": 8, "decoder": "fpn", "product": True})
    register("text_mask", factory="rsforge.heads.text_mask:TextMaskHead",
             config="rsforge.heads.configs:TextMaskHeadConfig",
             description="SegChange-R1: prompt-steered queries (frozen, cached text embeddings) over a difference FPN",
             example={"in_channels": [16, 24], "hidden": 8, "num_heads": 2, "num_queries": 4, "text_dim": 8,
                      "vocab_buckets": 64})
    register("token_mask", factory="rsforge.heads.token_mask:TokenMaskHead",
             config="rsforge.heads.configs:TokenMaskHeadConfig",
             description="DeltaVLM mask branch: bridged tokens on their patch grid (+ encoder maps) -> change logits",
             example={"in_dim": 8, "in_channels": [16, 24], "hidden": 8, "use_maps": True})
    register("classifier", factory="rsforge.heads.classifier:ClassifierHead",
             config="rsforge.heads.configs:ClassifierHeadConfig",
             description="scene classification: mean-pooled tokens -> class logits (cross-entropy on batch['labels'])",
             example={"in_dim": 8, "num_classes": 3, "hidden": 16})
