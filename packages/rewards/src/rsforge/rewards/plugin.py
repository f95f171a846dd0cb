from rsforge.core.hookspecs import hookimpl


@hookimpl
def register_rewards(register):
    register("cider_d", factory="rsforge.rewards.cider:CiderD", config="rsforge.rewards.configs:CiderDConfig",
             description="CIDEr-D per sample (pycocoevalcap's Cider: clipped tf-idf cosine, length "
                         "penalty, x10); document frequencies from the batch or fixed by fit()",
             example={})
    register("bleu4", factory="rsforge.rewards.overlap:Bleu", config="rsforge.rewards.configs:BleuConfig",
             description="sentence BLEU-n (default 4) as pycocoevalcap computes it, in [0, 1]", example={})
    register("rouge_l", factory="rsforge.rewards.overlap:RougeL", config="rsforge.rewards.configs:RougeLConfig",
             description="ROUGE-L F-measure as pycocoevalcap computes it, in [0, 1]", example={})
    register("meteor", factory="rsforge.rewards.meteor:Meteor", config="rsforge.rewards.configs:MeteorConfig",
             description="METEOR 1.5 (pycocoevalcap's jar, one persistent Java process), in [0, 1]",
             example={"memory": "512M"})
    register("length", factory="rsforge.rewards.length:LengthReward", config="rsforge.rewards.configs:LengthConfig",
             description="Gaussian closeness of the word count to the closest/mean reference length or a "
                         "fixed target, in (0, 1]", example={"sigma": 2.0})
    register("sde", factory="rsforge.rewards.objects:ObjectCoverage", config="rsforge.rewards.configs:SDEConfig",
             description="object coverage: share of the reference's object classes (remote-sensing "
                         "vocabulary, synonyms, plurals) the caption names, in [0, 1]", example={})
    register("counting", factory="rsforge.rewards.objects:CountingAccuracy",
             config="rsforge.rewards.configs:CountingConfig",
             description="1 - normalised error of the counted objects ('two buildings', '3 houses') vs the "
                         "references' counts, in [0, 1]", example={})
    register("nkl", factory="rsforge.rewards.nkl:NKL", config="rsforge.rewards.configs:NKLConfig",
             description="exp(-KL) (or -KL) between the references' and the caption's word distributions",
             example={"smoothing": 0.2})
    register("mask_iou", factory="rsforge.rewards.masks:MaskIoU", config="rsforge.rewards.configs:MaskIoUConfig",
             description="IoU of extras['pred_masks'] and extras['masks'] (models with a change-mask head)",
             example={"threshold": 0.5})
    register("varentropy", factory="rsforge.rewards.regularisers:Varentropy",
             config="rsforge.rewards.configs:VarentropyConfig",
             description="logit regulariser (reads logits, not texts): per-token varentropy, entropy or "
                         "their ratio, masked after EOS; the kernel adds weight x value to the SCST loss",
             example={"mode": "ratio", "weight": 0.01})
