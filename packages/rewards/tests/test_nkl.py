"""The seed's NKL over token embeddings of a tiny language model saved to a folder (no download):
identical caption sets give 0, disjoint ones a positive KL, the windows roll and the fits refresh."""

from __future__ import annotations

import pickle

import pytest
import torch
from tokenizers import Tokenizer, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import BertConfig, BertModel, BertTokenizerFast, GPT2Config, GPT2Model, PreTrainedTokenizerFast

from rsforge.rewards.configs import NKLConfig
from rsforge.rewards.nkl import EmbeddingNKL

WORDS = ["a", "b", "c", "x", "y", "z", "forest", "river", "road"]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """A 2-layer BERT with random weights and a word-piece tokenizer over WORDS, saved as a model folder."""
    folder = tmp_path_factory.mktemp("tiny_bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=32)).save_pretrained(folder)
    BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(folder)
    return str(folder)


def nkl(model: str, **options) -> EmbeddingNKL:
    return EmbeddingNKL(NKLConfig(name="nkl", model=model, **options))


def test_identical_caption_sets_give_zero(bert_dir):
    reward = nkl(bert_dir)
    captions = ["a b c", "forest river road", "x"]
    scores = reward(captions, [[c] for c in captions])
    assert reward.divergence == pytest.approx(0.0, abs=1e-6)
    assert scores.abs().max().item() < 1e-4 and scores.shape == (3,) and scores.dtype == torch.float32


def test_disjoint_caption_sets_diverge_and_closer_captions_score_higher(bert_dir):
    reward = nkl(bert_dir)
    scores = reward(["x y z", "y z x"], [["a b c"], ["b c a"]])
    assert reward.divergence > 1.0 and (scores < 0).all()
    reward = nkl(bert_dir)
    close, off = reward(["a b c", "x y z"], [["a b c"], ["a b c"]]).tolist()
    assert close > off
    assert reward([""], [["a b c"]]).item() == pytest.approx(-reward.divergence)  # no token: the expected value


def test_references_enter_once_per_distinct_list(bert_dir):
    reward = nkl(bert_dir)
    reward(["a b c"] * 3, [["x y"]] * 3)  # SCST repeats an image's references for each of its rollouts
    assert (len(reward.generated), len(reward.reference)) == (9, 2)


def test_the_window_rolls(bert_dir):
    reward = nkl(bert_dir, window=3, refresh=3)
    reward(["x y z"], [["a b c"]])
    assert reward.divergence > 1.0
    reward(["a b c"], [["a b c"]])  # the window holds only the last 3 tokens: "x y z" is gone
    assert len(reward.generated) == len(reward.reference) == 3
    assert reward.divergence == pytest.approx(0.0, abs=1e-6)


def test_the_fits_refresh_every_refresh_tokens(bert_dir):
    reward = nkl(bert_dir, window=3, refresh=6)
    reward(["x y z"], [["a b c"]])  # the first call fits
    first = reward.divergence
    reward(["a b c"], [["a b c"]])  # 3 generated tokens since: the fits stay
    assert reward.divergence == first
    scores = reward(["a b c"], [["a b c"]])  # 6: refit on the windows, now identical
    assert reward.divergence == pytest.approx(0.0, abs=1e-6) and scores.abs().item() < 1e-4


def test_a_restored_state_scores_as_the_uninterrupted_reward(bert_dir):
    batches = [(["x y z", "a b"], [["a b c"], ["road"]]), (["forest river"], [["a b c"]]),
               (["a b c", "z"], [["forest"], ["x"]])]
    uninterrupted, first = nkl(bert_dir, window=6, refresh=4), nkl(bert_dir, window=6, refresh=4)
    expected = [uninterrupted(*batch) for batch in batches]
    first(*batches[0])
    resumed = nkl(bert_dir, window=6, refresh=4)
    resumed.load_state_dict(pickle.loads(pickle.dumps(first.state_dict())))
    for batch, scores in zip(batches[1:], expected[1:], strict=True):
        assert torch.equal(resumed(*batch), scores)
    assert resumed.divergence == uninterrupted.divergence


def test_a_decoder_without_pad_token_and_a_pickled_copy(tmp_path):
    words = ["</s>", "[UNK]", *WORDS]
    core = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=core, eos_token="</s>", unk_token="[UNK]").save_pretrained(tmp_path)
    GPT2Model(GPT2Config(vocab_size=len(words), n_embd=16, n_layer=1, n_head=2, n_positions=32,
                         bos_token_id=0, eos_token_id=0)).save_pretrained(tmp_path)
    reward = nkl(str(tmp_path), batch_size=1)
    scores = reward(["a b", "forest river road"], [["a b c"], ["road"]])
    assert torch.isfinite(scores).all() and (len(reward.generated), len(reward.reference)) == (5, 4)
    copy = pickle.loads(pickle.dumps(reward))
    assert copy._encoder is None and len(copy.generated) == 5
    assert torch.isfinite(copy(["a"], [["a"]])).all()
    reward.close()
    assert reward._encoder is None


def test_config_needs_one_model_source():
    with pytest.raises(ValueError, match="exactly one of"):
        NKLConfig(name="nkl")
    with pytest.raises(ValueError, match="needs `vocab`"):
        NKLConfig(name="nkl", config={"model_type": "bert"})
    with pytest.raises(ValueError, match="model_type"):
        NKLConfig(name="nkl", config={"hidden_size": 8}, vocab=["a"])
