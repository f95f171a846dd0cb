"""Tiny InstructBLIP / BLIP-2 models built by transformers itself and saved in the released folder layout
(config.json, model.safetensors, tokenizer files, qformer_tokenizer/, preprocessor_config.json), the
reference that `rsforge convert` is checked against."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    BertTokenizer,
    Blip2Config,
    Blip2ForConditionalGeneration,
    BlipImageProcessor,
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
)

from rsforge.decoders.word_level import SPECIALS, build_tokenizer

WORDS = ["a", "building", "road", "new", "the", "change", "describe", "what", "is", "here", "two", "houses"]
LM_VOCAB = SPECIALS + WORDS
PAD, UNK, BOS, EOS = range(4)
VOCAB_SIZE = 40  # beyond the words: unused rows, and the image placeholder id
IMAGE_TOKEN = VOCAB_SIZE - 1
MEAN, STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]  # OpenAI CLIP, as released
NUM_QUERIES = 4
VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
          "image_size": 32, "patch_size": 8}
QFORMER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
           "max_position_embeddings": 64, "cross_attention_frequency": 1}
TEXT = {
    "llama": {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 128},
    "opt": {"model_type": "opt", "hidden_size": 32, "ffn_dim": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
            "word_embed_proj_dim": 32, "max_position_embeddings": 128},
    "t5": {"model_type": "t5", "d_model": 32, "d_ff": 64, "d_kv": 16, "num_layers": 2, "num_decoder_layers": 2,
           "num_heads": 2, "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False,
           "decoder_start_token_id": PAD},
}
QFORMER_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]


def build_reference(folder: Path, fmt: str, text: str, seed: int = 0, max_shard_size: str = "5GB"):
    """A random tiny model of `fmt` ('hf-instructblip' / 'hf-blip2') with the `text` LM, saved in `folder`
    as the hub folders are laid out (in shards of `max_shard_size`, as the 7B releases are); returns the
    model (eval mode)."""
    torch.manual_seed(seed)
    text_config = {**TEXT[text], "vocab_size": VOCAB_SIZE, "pad_token_id": PAD, "bos_token_id": BOS,
                   "eos_token_id": EOS}
    if fmt == "hf-instructblip":
        config = InstructBlipConfig(vision_config=VISION, qformer_config={**QFORMER, "vocab_size": 30},
                                    text_config=text_config, num_query_tokens=NUM_QUERIES,
                                    image_token_index=IMAGE_TOKEN)
        model = InstructBlipForConditionalGeneration(config)
    else:
        config = Blip2Config(vision_config=VISION, qformer_config=QFORMER, text_config=text_config,
                             num_query_tokens=NUM_QUERIES, image_token_index=IMAGE_TOKEN)
        model = Blip2ForConditionalGeneration(config)
    with torch.no_grad():  # norms and biases off their defaults, so a wrong mapping cannot pass by chance
        for name, param in model.named_parameters():
            if name.endswith("bias") or "norm" in name.lower():
                param.add_(torch.randn_like(param) * 0.1)
    model.eval()
    model.save_pretrained(folder, max_shard_size=max_shard_size)
    build_tokenizer(LM_VOCAB).save_pretrained(folder)
    BlipImageProcessor(size={"height": 32, "width": 32}, image_mean=MEAN, image_std=STD,
                       resample=3).save_pretrained(folder)
    if fmt == "hf-instructblip":
        BertTokenizer(vocab={w: i for i, w in enumerate(QFORMER_VOCAB)}).save_pretrained(folder / "qformer_tokenizer")
    return model


def lm_ids(words: str) -> list[int]:
    return [LM_VOCAB.index(w) for w in words.split()]


def qformer_ids(words: str) -> list[int]:
    """[CLS] words [SEP], as the released BERT tokenizer encodes an instruction."""
    return [2, *(QFORMER_VOCAB.index(w) for w in words.split()), 3]
