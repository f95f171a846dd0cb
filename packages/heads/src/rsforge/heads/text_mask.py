"""Text-guided change-mask head (SegChange-R1): the prompt steers which changes the mask shows.

The prompt ("new buildings", "cleared vegetation") is embedded once per distinct text by a frozen Hugging
Face text encoder and cached, or (no `text_encoder`) embedded by a small learned table of hashed words.
Learned queries attend to the prompt's token embeddings; the steered queries modulate the fused
bitemporal FPN map (FiLM) and score every pixel by a dot product, both feeding the classifier.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from rsforge.core.interfaces import VisualFeatures
from rsforge.core.text import word_hashes
from rsforge.heads.change_mask import DifferenceNeck, conv_block, upsample_to_image
from rsforge.heads.configs import TextMaskHeadConfig
from rsforge.heads.losses import mask_loss


class FrozenTextEncoder(nn.Module):
    """A frozen HF text encoder with a cache: each distinct prompt runs through the encoder once."""

    weights_from_source = True  # rebuilt from `text_encoder`, so saving the model skips its weights

    def __init__(self, source: str, max_tokens: int, cache_size: int) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer  # only this mode needs transformers

        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.model = AutoModel.from_pretrained(source).eval().requires_grad_(False)
        self.dim = self.model.config.hidden_size
        self.max_tokens, self.cache_size = max_tokens, cache_size
        self.cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def train(self, mode: bool = True) -> FrozenTextEncoder:
        return super().train(False)  # frozen: dropout stays off while the rest of the model trains

    @torch.no_grad()
    def _embed(self, texts: list[str]) -> list[torch.Tensor]:
        device = next(self.model.parameters()).device
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        hidden = self.model(**{k: v.to(device) for k, v in enc.items()}).last_hidden_state
        return [h[m.bool()] for h, m in zip(hidden, enc["attention_mask"].to(device), strict=True)]

    def forward(self, texts: list[str]) -> list[torch.Tensor]:
        """Each text's token embeddings (L_i, dim); only prompts not yet cached reach the encoder."""
        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if missing:
            for text, emb in zip(missing, self._embed(missing), strict=True):
                self.cache[text] = emb
        for text in texts:
            self.cache.move_to_end(text)
        out = [self.cache[t] for t in texts]
        while len(self.cache) > self.cache_size:  # evict least recently used, after reading this batch
            self.cache.popitem(last=False)
        return out


class HashedWordEmbedding(nn.Module):
    """A learned embedding of the prompt's words, hashed into buckets (no vocabulary to store). Word ids
    are cached per prompt; the embeddings themselves train, so they are looked up every batch."""

    def __init__(self, buckets: int, dim: int, max_tokens: int, cache_size: int) -> None:
        super().__init__()
        self.table = nn.Embedding(buckets, dim)
        self.dim, self.buckets, self.max_tokens, self.cache_size = dim, buckets, max_tokens, cache_size
        self.cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def _ids(self, text: str) -> torch.Tensor:
        if text not in self.cache:
            # A prompt with no words reads as one empty word, whose crc32 is 0.
            self.cache[text] = torch.tensor(word_hashes(text, self.buckets, self.max_tokens) or [0])
            if len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
        return self.cache[text]

    def forward(self, texts: list[str]) -> list[torch.Tensor]:
        return [self.table(self._ids(t).to(self.table.weight.device)) for t in texts]


class TextMaskHead(DifferenceNeck):
    reads_instruction = True

    def __init__(self, config: TextMaskHeadConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden
        if config.text_encoder is not None:
            self.text = FrozenTextEncoder(config.text_encoder, config.max_text_tokens, config.cache_size)
        else:
            self.text = HashedWordEmbedding(config.vocab_buckets, config.text_dim, config.max_text_tokens,
                                            config.cache_size)
        self.text_proj = nn.Linear(self.text.dim, h)
        self.queries = nn.Parameter(torch.randn(config.num_queries, h) * 0.02)
        self.attend = nn.MultiheadAttention(h, config.num_heads, batch_first=True)
        self.query_norm = nn.LayerNorm(h)
        self.film = nn.Linear(h, 2 * h)
        self.build_neck(config.in_channels, h, decoder=config.decoder, product=config.product)
        self.refine = nn.Sequential(conv_block(h, h), conv_block(h, h))
        self.classify = nn.Conv2d(h + config.num_queries, config.num_classes, 1)

    def steered_queries(self, prompts: list[str]) -> torch.Tensor:
        """prompts -> queries (B, Q, hidden) that have attended to each prompt's token embeddings."""
        embeddings = self.text(prompts)
        text = nn.utils.rnn.pad_sequence(embeddings, batch_first=True).to(self.queries.device, self.queries.dtype)
        lengths = torch.tensor([len(e) for e in embeddings], device=text.device)
        padding = torch.arange(text.shape[1], device=text.device)[None] >= lengths[:, None]
        queries = self.queries.expand(len(prompts), -1, -1)
        attended, _ = self.attend(queries, self.text_proj(text), self.text_proj(text), key_padding_mask=padding)
        return self.query_norm(queries + attended)

    def forward(self, features: VisualFeatures, image_size: int, instructions: list[str] | None = None) -> torch.Tensor:
        batch = features.tokens.shape[0]
        prompts = instructions if instructions is not None else [self.config.default_prompt] * batch
        if len(prompts) != batch:
            raise ValueError(f"text_mask head got {len(prompts)} instructions for a batch of {batch}")
        queries = self.steered_queries(prompts)
        x = self.neck(features.maps)
        gamma, beta = self.film(queries.mean(1))[:, :, None, None].chunk(2, dim=1)
        x = upsample_to_image(x * (1 + gamma) + beta, self.refine, image_size)
        scores = torch.einsum("bqc,bchw->bqhw", queries, x) / math.sqrt(x.shape[1])
        logits = self.classify(torch.cat([x, scores], dim=1))
        return F.interpolate(logits, size=(image_size, image_size), mode="bilinear", align_corners=False)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return mask_loss(logits, target, self.config)
