"""A word-level tokenizer built from the training texts, for small models trained from scratch.

Remote-sensing caption corpora have a few hundred words; one id per word makes a tiny LM learn in
minutes on a CPU. The vocabulary is stored in the recipe, so a saved model rebuilds it exactly.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]
# Words of the decoder's own prompt template, present whatever the data says.
TEMPLATE_WORDS = ["user", "assistant", ":"]


def _pre_tokenizer():
    return pre_tokenizers.Whitespace()


def build_vocab(corpus: Iterable[str]) -> list[str]:
    pre = _pre_tokenizer()
    norm = normalizers.Lowercase()
    words: set[str] = set(TEMPLATE_WORDS)
    for text in corpus:
        words.update(w for w, _ in pre.pre_tokenize_str(norm.normalize_str(text)))
    return SPECIALS + sorted(words - set(SPECIALS))


def build_tokenizer(vocab: list[str]) -> PreTrainedTokenizerFast:
    if vocab[: len(SPECIALS)] != SPECIALS:
        raise ValueError(f"a word-level vocabulary must start with {SPECIALS}, got {vocab[:4]}")
    model = WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>")
    tok = Tokenizer(model)
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = _pre_tokenizer()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
