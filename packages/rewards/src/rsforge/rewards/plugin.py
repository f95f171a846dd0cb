from rsforge.core.hookspecs import hookimpl

# A tiny random embedding model for the contract example of `nkl` (its embeddings mean nothing).
_TINY_BERT = {"model_type": "bert", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
              "intermediate_size": 16, "max_position_embeddings": 32}
_TINY_VOCAB = ["a", "building", "was", "built", "no", "change", "there", "is"]


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
    register("length", factory="rsforge.rewards.length:TokenCount", config="rsforge.rewards.configs:LengthConfig",
             description="the seed's length: the caption's number of tokens, maximised", example={})
    register("length_target", factory="rsforge.rewards.length:LengthReward",
             config="rsforge.rewards.configs:LengthTargetConfig",
             description="Gaussian closeness of the word count to the closest/mean reference length or a "
                         "fixed target, in (0, 1]", example={"sigma": 2.0})
    register("sde", factory="rsforge.rewards.objects:SceneDescriptionExhaustiveness",
             config="rsforge.rewards.configs:SDEConfig",
             description="the seed's SDE: share of the ground-truth entities (references and optional "
                         "extras['object_counts']) the caption names, lemmatised, synonyms from a vocabulary "
                         "file, in [0, 1]", example={})
    register("object_coverage", factory="rsforge.rewards.objects:ObjectCoverage",
             config="rsforge.rewards.configs:ObjectCoverageConfig",
             description="share of the references' object classes the caption names, with a set score for "
                         "scenes without objects, in [0, 1]", example={})
    register("count_abs_error", factory="rsforge.rewards.counting:CountAbsError",
             config="rsforge.rewards.configs:CountingConfig",
             description="the seed's mean absolute count error, negated: -mean |caption - reference| over the "
                         "classes both count, in (-inf, 0]", example={})
    register("count_signed_error", factory="rsforge.rewards.counting:CountSignedError",
             config="rsforge.rewards.configs:CountingConfig",
             description="the seed's mean signed count error as a reward: -|mean (caption - reference)| over "
                         "the classes both count, in (-inf, 0]", example={})
    register("count_accuracy", factory="rsforge.rewards.counting:CountAccuracy",
             config="rsforge.rewards.configs:CountingConfig",
             description="1 - normalised error of the counted objects ('two buildings', '3 houses') vs the "
                         "references' counts, in [0, 1]", example={})
    register("nkl", factory="rsforge.rewards.nkl:EmbeddingNKL", config="rsforge.rewards.configs:NKLConfig",
             description="the seed's NKL: -KL between Gaussian fits of generated and reference token embeddings "
                         "(a small language model) over rolling token windows, split per caption",
             example={"config": _TINY_BERT, "vocab": _TINY_VOCAB, "window": 50, "refresh": 10})
    register("word_kl", factory="rsforge.rewards.word_kl:WordKL", config="rsforge.rewards.configs:WordKLConfig",
             description="exp(-KL) (or -KL) between the references' and the caption's word distributions",
             example={"smoothing": 0.2})
    register("mask_iou", factory="rsforge.rewards.masks:MaskIoU", config="rsforge.rewards.configs:MaskIoUConfig",
             description="IoU of extras['pred_masks'] and extras['masks'] (models with a change-mask head)",
             example={"threshold": 0.5})
    register("varentropy", factory="rsforge.rewards.regularisers:Varentropy",
             config="rsforge.rewards.configs:VarentropyConfig",
             description="logit regulariser (reads logits, not texts): the seed's V/E (variance over mean of the "
                         "token entropies), or per-token varentropy, entropy or their ratio, masked after EOS; "
                         "the kernel adds weight x value to the SCST loss",
             example={"weight": 0.0001})
