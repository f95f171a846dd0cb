"""NKL, the seed's negative KL divergence between the token-embedding distributions of generated and
reference captions, over rolling windows of tokens."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedTokenizerFast

from rsforge.core.interfaces import Reward
from rsforge.rewards.common import as_scores, check_batch
from rsforge.rewards.configs import NKLConfig

_VARIANCE_FLOOR = 1e-6  # keeps a dimension that is constant over the window (or a one-token window) finite
_LOG_2PI = math.log(2 * math.pi)


class TokenWindow:
    """The last `size` token embeddings pushed (rows of an (n, D) tensor), oldest dropped first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.rows: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.rows is None else len(self.rows)

    def push(self, rows: torch.Tensor) -> None:
        if len(rows):
            self.rows = rows if self.rows is None else torch.cat([self.rows, rows])
            self.rows = self.rows[-self.size :]


@dataclass(frozen=True)
class DiagonalGaussian:
    """A Gaussian with diagonal covariance fitted to embeddings (maximum likelihood)."""

    mean: torch.Tensor
    var: torch.Tensor

    @classmethod
    def fit(cls, rows: torch.Tensor) -> DiagonalGaussian:
        return cls(rows.mean(0), rows.var(0, unbiased=False) + _VARIANCE_FLOOR)

    def log_density(self, rows: torch.Tensor) -> torch.Tensor:
        return -0.5 * ((rows - self.mean).square() / self.var + self.var.log() + _LOG_2PI).sum(-1)

    def kl(self, other: DiagonalGaussian) -> float:
        """KL(self || other), in nats."""
        ratio = self.var / other.var
        return float(0.5 * (ratio - 1 - ratio.log() + (self.mean - other.mean).square() / other.var).sum())


class EmbeddingNKL(Reward):
    """NKL, the seed's definition (InstructBLIP-SCST README, "NKL: Negative Kullback-Leibler
    Divergence"): "we compute embeddings for every token of the ground-truth captions and of the
    generated captions [with a small pretrained language model]. This yields two distributions of
    embeddings, that we try to bring closer by minimizing the KL-Divergence [...] only for the last
    10,000 token embeddings, and we update this learning signal once every 10,000 tokens."

    Here: every call embeds the candidates' tokens and the references' tokens (the last hidden state of
    `model`, special tokens left out; references once per distinct reference list of the call, as SCST
    repeats each image's references for its rollouts) and appends them to two windows of the last
    `window` tokens. The two windows are fitted with diagonal Gaussians, P (generated) and Q
    (references), on the first call and again each time `refresh` generated tokens have arrived since
    the last fit; between refits P and Q stay fixed. `divergence` is KL(P || Q).

    Per candidate, the reward is the mean over its tokens e of log Q(e) - log P(e): its mean over
    captions drawn from the policy is -KL(P || Q), so it is the seed's negative KL split into the
    per-caption terms whose policy gradient lowers that KL (a reward equal to -KL for every caption
    would give SCST's sample-minus-greedy advantage nothing to work with). Identical windows give 0;
    tokens typical of the references and rare in recent generations score highest. A caption without
    tokens gets -KL(P || Q), the expected value. Before any fit (no tokens seen yet) rewards are 0.

    The seed does not say how the KL of two embedding sets is computed; diagonal Gaussian fits are this
    reward's choice (a full covariance needs more tokens than dimensions). Its public code (`rewards.py`,
    `kl_divergence`) holds an older word-frequency variant, returned as one value for the whole batch.

    State: the windows and fits persist across calls. A plain call feeds them with its own tokens (this
    process only). `score_shared` is the trainer's path (`RewardSet`): it feeds them with every worker's
    tokens of the step, gathered by the `share` it is given, so all workers hold the same windows and
    fits and score alike; with no `share` (evaluation) it scores without feeding them. `state_dict()` /
    `load_state_dict()` carry them through a checkpoint (two windows of `window` x hidden-size floats).
    The model loads on first use (and again in a pickled copy); `close()` releases it."""

    def __init__(self, config: NKLConfig) -> None:
        self.config = config
        self.generated = TokenWindow(config.window)
        self.reference = TokenWindow(config.window)
        self.since_fit = 0
        self.fits: tuple[DiagonalGaussian, DiagonalGaussian] | None = None
        self._encoder: tuple[Any, torch.nn.Module] | None = None

    @property
    def divergence(self) -> float | None:
        """KL(P || Q) of the current fits, None before the first."""
        return None if self.fits is None else self.fits[0].kl(self.fits[1])

    def __call__(self, candidates: Sequence[str], references: Sequence[Sequence[str]],
                 extras: dict[str, Any] | None = None) -> torch.Tensor:
        if not candidates:
            check_batch("nkl", candidates, references)
            return as_scores([])
        return self.score_shared(candidates, references, share=_own)

    def score_shared(self, candidates: Sequence[str], references: Sequence[Sequence[str]],
                     share: Callable[[torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
        """Feed the windows, refit when due, then score. `share` maps this process's new token embeddings
        (n, D) to the rows every process adds: in a multi-worker run, all workers' rows in rank order (a
        collective call, which every worker makes even with no token). None: leave windows and fits as
        they are."""
        check_batch("nkl", candidates, references)
        generated = self.embed(list(candidates))
        if share is not None:
            distinct = dict.fromkeys(tuple(refs) for refs in references)
            new_generated = share(self._rows(generated))
            self.generated.push(new_generated)
            self.reference.push(share(self._rows(self.embed([r for refs in distinct for r in refs]))))
            self.since_fit += len(new_generated)
            due = self.fits is None or self.since_fit >= self.config.refresh
            if due and len(self.generated) and len(self.reference):
                self.fits = (DiagonalGaussian.fit(self.generated.rows), DiagonalGaussian.fit(self.reference.rows))
                self.since_fit = 0
        if self.fits is None:
            return as_scores([0.0] * len(candidates))
        p, q = self.fits
        empty = -p.kl(q)
        return as_scores([float((q.log_density(e) - p.log_density(e)).mean()) if len(e) else empty
                          for e in generated])

    def embed(self, texts: list[str]) -> list[torch.Tensor]:
        """Each text's token embeddings (n_i, D), float32 on the CPU, special tokens left out."""
        tokenizer, model = self._load()
        width = model.config.hidden_size
        out = [torch.empty(0, width) for _ in texts]
        filled = [i for i, t in enumerate(texts) if t.strip()]  # an empty text has no token to embed
        limit = getattr(model.config, "max_position_embeddings", None) or 512
        device = torch.device(self.config.device)
        for start in range(0, len(filled), self.config.batch_size):
            rows = filled[start : start + self.config.batch_size]
            encoded = tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=limit,
                                return_special_tokens_mask=True, return_tensors="pt")
            keep = encoded.pop("special_tokens_mask").eq(0) & encoded["attention_mask"].bool()
            with torch.no_grad():
                hidden = model(**{k: v.to(device) for k, v in encoded.items()}).last_hidden_state
            hidden = hidden.float().cpu()
            for j, i in enumerate(rows):
                out[i] = hidden[j][keep[j]]
        return out

    def _rows(self, embedded: list[torch.Tensor]) -> torch.Tensor:
        """The texts' token embeddings stacked (n, D); (0, D) for no text."""
        return torch.cat(embedded) if embedded else torch.empty(0, self._load()[1].config.hidden_size)

    def _load(self) -> tuple[Any, torch.nn.Module]:
        if self._encoder is None:
            if self.config.model is not None:
                tokenizer = AutoTokenizer.from_pretrained(self.config.model)
                model = AutoModel.from_pretrained(self.config.model)
            else:
                tokenizer, model = _random_model(self.config.config, self.config.vocab)
            if tokenizer.pad_token is None:  # GPT-2 style tokenizers have none; padding is masked out anyway
                if tokenizer.eos_token is None:
                    raise ValueError(f"nkl: the tokenizer of {self.config.model} has neither a pad nor an eos token")
                tokenizer.pad_token = tokenizer.eos_token
            self._encoder = (tokenizer, model.eval().to(self.config.device))
        return self._encoder

    def state_dict(self) -> dict[str, Any]:
        """The windows, the fits and the tokens since the last fit, as tensors and numbers."""
        fits = None if self.fits is None else [t for g in self.fits for t in (g.mean, g.var)]
        return {"generated": self.generated.rows, "reference": self.reference.rows, "since_fit": self.since_fit,
                "fits": fits}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generated.rows, self.reference.rows = state["generated"], state["reference"]
        self.since_fit = int(state["since_fit"])
        fits = state["fits"]
        self.fits = None if fits is None else (DiagonalGaussian(*fits[:2]), DiagonalGaussian(*fits[2:]))

    def close(self) -> None:
        self._encoder = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_encoder": None}  # a copy loads its own model


def _own(rows: torch.Tensor) -> torch.Tensor:
    """A single process's share: its own rows."""
    return rows


def _random_model(config: dict[str, Any], vocab: list[str]) -> tuple[PreTrainedTokenizerFast, torch.nn.Module]:
    """A model of `config` with random weights and a lower-casing word-level tokenizer over `vocab`."""
    words = ["[PAD]", "[UNK]", *(w for w in dict.fromkeys(vocab) if w not in ("[PAD]", "[UNK]"))]
    core = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]")
    options = dict(config)
    model_config = AutoConfig.for_model(options.pop("model_type"), vocab_size=len(words), **options)
    return tokenizer, AutoModel.from_config(model_config)
