"""NKL's rolling token windows are one state for all workers and travel with the checkpoint.

Two gloo processes score different batches through `RewardSet` for STEPS training steps, as SCST's
workers do. Each step's token embeddings are gathered from both ranks, so both ranks end every step with
the same windows and fits, and these are the windows of one process fed both ranks' batches in rank
order, scoring every caption as that process does. A fresh `RewardSet` on each rank that loads rank 0's
state after step RESUME_AFTER (saved and loaded as the worker loop checkpoints it) scores the remaining
steps exactly as the uninterrupted run. The embedding model is a tiny random BERT the test saves itself.
A cheaper stand-in for `test_scst_resume.py`, whose tiny recipe leaves NKL out.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from transformers import BertConfig, BertModel, BertTokenizerFast

from .conftest import free_port

WORDS = ["a", "two", "three", "new", "buildings", "trees", "road", "river", "forest", "were", "built", "cut"]
STEPS, RESUME_AFTER = 4, 2
# (candidates, references) per step and rank: two rollouts per image, distinct reference lists per rank.
BATCHES = [
    [(["two new buildings", "a road", "trees were cut", "a river"],
      [["two buildings were built"]] * 2 + [["trees were cut down"]] * 2),
     (["a forest", "three buildings", "a new road were built", "river"],
      [["a forest was cut"]] * 2 + [["three new buildings"]] * 2)],
    [(["a river", "new trees"], [["a river and a road"]] * 2),
     (["buildings were built", "a", "forest road", "two trees"],
      [["new buildings"]] * 2 + [["a road in the forest"]] * 2)],
    [(["three trees were cut", "road"], [["a road was built"]] * 2),
     (["two rivers", "new new new"], [["a river"]] * 2)],
    [(["a new forest", "the buildings", "river road", "cut"], [["trees"]] * 2 + [["a road"]] * 2),
     (["two buildings", "three buildings"], [["two buildings"]] * 2)],
]


def _reward_set(model_dir: str):
    from rsforge.core.plugins import PluginManager
    from rsforge.rewards.configs import NKLConfig
    from rsforge.train.reward_set import RewardSet

    # A window shorter than the steps' tokens and a refresh that skips steps: the windows roll and the fits
    # stay put between refits, so a restored state must carry both.
    config = NKLConfig(name="nkl", model=model_dir, window=12, refresh=10, normalise="minmax")
    return RewardSet([config], PluginManager().registry)


def _nkl_state(rewards) -> dict:
    return rewards.state_dict()["rewards"]["nkl"]


def _worker(rank: int, world: int, port: int, model_dir: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    out_dir = Path(out)
    rewards = _reward_set(model_dir)
    uninterrupted = []
    for step, batches in enumerate(BATCHES):
        uninterrupted.append(rewards.score(*batches[rank]).total)
        if step + 1 == RESUME_AFTER and rank == 0:
            torch.save(rewards.state_dict(), out_dir / "checkpoint.pt")
    dist.barrier()  # the checkpoint is written before any rank reads it
    resumed = _reward_set(model_dir)
    resumed.load_state_dict(torch.load(out_dir / "checkpoint.pt", weights_only=True))
    after_resume = [resumed.score(*batches[rank]).total for batches in BATCHES[RESUME_AFTER:]]
    torch.save({"uninterrupted": uninterrupted, "resumed": after_resume, "state": _nkl_state(rewards),
                "resumed_state": _nkl_state(resumed)}, out_dir / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("tiny_bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=32)).save_pretrained(folder)
    BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(folder)
    return str(folder)


def _assert_same_state(got: dict, want: dict) -> None:
    assert got["since_fit"] == want["since_fit"]
    assert torch.equal(got["generated"], want["generated"]) and torch.equal(got["reference"], want["reference"])
    assert all(torch.equal(g, w) for g, w in zip(got["fits"], want["fits"], strict=True))


def test_two_workers_share_the_windows_and_resume_them(model_dir, tmp_path):
    mp.spawn(_worker, args=(2, free_port(), model_dir, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]

    # Both ranks hold one state, and it is the state of one process fed both ranks' batches in rank order.
    _assert_same_state(ranks[1]["state"], ranks[0]["state"])
    single = _reward_set(model_dir)
    for step, batches in enumerate(BATCHES):
        (cands0, refs0), (cands1, refs1) = batches
        total = single.score(cands0 + cands1, refs0 + refs1).total
        torch.testing.assert_close(torch.cat([ranks[0]["uninterrupted"][step], ranks[1]["uninterrupted"][step]]),
                                   total, rtol=1e-5, atol=1e-6)
    _assert_same_state(ranks[0]["state"], _nkl_state(single))
    assert len(ranks[0]["state"]["generated"]) == 12 and ranks[0]["state"]["fits"] is not None  # the window rolled

    # Resumed from rank 0's checkpoint, each rank scores the remaining steps as the uninterrupted run.
    for got in ranks:
        for resumed, uninterrupted in zip(got["resumed"], got["uninterrupted"][RESUME_AFTER:], strict=True):
            assert torch.equal(resumed, uninterrupted)
        _assert_same_state(got["resumed_state"], got["state"])


def test_evaluation_scores_leave_the_windows_alone_and_states_must_match(model_dir):
    rewards = _reward_set(model_dir)
    rewards.score(*BATCHES[0][0])
    before = _nkl_state(rewards)
    first = rewards.score(*BATCHES[1][0], update=False).total
    assert torch.equal(rewards.score(*BATCHES[1][0], update=False).total, first)
    _assert_same_state(_nkl_state(rewards), before)
    state = rewards.state_dict()
    with pytest.raises(ValueError, match="reward states"):
        _reward_set(model_dir).load_state_dict({**state, "rewards": {}})
