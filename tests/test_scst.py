"""SCST end to end on synthetic change captions with a tiny model, in pure torch (no Ray).

A deliberately under-trained SFT model is the starting point; a few SCST steps on CIDEr-D (document
frequencies fitted on the training references) must raise the greedy CIDEr-D of HELD-OUT image
pairs, scored on PTB-tokenized text as evaluation scores it. Seeds are fixed, so the run is
deterministic on one machine. The other tests check one step of each mode (`rollout`, the seed code's
`teacher_forced`), what the step hands rewards, and the recipe check of an scst stage's rewards.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from rsforge.core.batch import Batch
from rsforge.core.model import RSForgeModel
from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import StageConfig, parse_recipe
from rsforge.datasets.loading import load_split, training_texts
from rsforge.datasets.torch_dataset import SampleDataset, collate
from rsforge.tasks.metrics.ptb import ptb_tokenize
from rsforge.train.reward_set import RewardSet
from rsforge.train.scst import batch_references, scst_step
from rsforge.train.steps import build_optimizer, build_scheduler, seed_everything, sft_step

ROOT = Path(__file__).resolve().parents[1]
SFT_EPOCHS = 4  # deliberately short: greedy captions still ramble and repeat, which SCST fixes
SCST_STEPS = 150


def _recipe(data_root: Path, plugins: PluginManager):
    raw = yaml.safe_load((ROOT / "recipes" / "tiny.yaml").read_text())
    raw["heads"] = []  # captions only
    raw["data"] = {"name": "synth", "n": 160, "seed": 0, "size": 32, "root": str(data_root)}
    raw["rewards"] = [{"name": "cider_d"}]
    raw["train"].update({"batch_size": 16, "lr": 0.003, "seed": 0})
    return parse_recipe(raw, plugins.registry)


def _items(samples, image_size: int) -> list[dict]:
    dataset = SampleDataset(samples, image_size)
    return [dataset[i] for i in range(len(dataset))]


def _greedy_cider(model, items: list[dict], reward) -> float:
    model.eval()
    scores = []
    for batch in DataLoader(items, batch_size=64, collate_fn=collate):
        texts = model.generate(batch.images, batch.prompts, max_new_tokens=16).texts
        references = [[ptb_tokenize(r) for r in refs] for refs in batch_references(batch)]
        scores.append(reward([ptb_tokenize(t) for t in texts], references))
    return float(torch.cat(scores).mean())


def test_scst_raises_held_out_cider(tmp_path):
    start = time.perf_counter()
    threads = torch.get_num_threads()
    # The model is tiny: one thread is several times faster than two contending ones.
    torch.set_num_threads(1)
    try:
        _train_and_compare(tmp_path, start)
    finally:
        torch.set_num_threads(threads)


def _train_and_compare(tmp_path: Path, start: float) -> None:
    plugins = PluginManager()
    recipe = _recipe(tmp_path / "synth", plugins)
    train_samples = load_split(recipe, plugins, "train")
    recipe = recipe.prepared(training_texts(train_samples))
    seed_everything(0)
    model = RSForgeModel.from_recipe(recipe, plugins)

    sft_items = _items(train_samples, model.image_size)  # one item per reference caption
    pairs = list({s.images: s for s in train_samples}.values())  # one item per image pair
    scst_items = _items(pairs, model.image_size)
    held_out = _items(load_split(recipe, plugins, "val") + load_split(recipe, plugins, "test"), model.image_size)
    corpus = [list(s.references) for s in pairs]

    generator = torch.Generator().manual_seed(0)
    loader = DataLoader(sft_items, batch_size=16, shuffle=True, collate_fn=collate, generator=generator)
    optimizer = build_optimizer(model, recipe.train)
    scheduler = build_scheduler(optimizer, recipe.train, total_steps=SFT_EPOCHS * len(loader))
    for _ in range(SFT_EPOCHS):
        for batch in loader:
            sft_step(model, batch, optimizer, scheduler, grad_clip=1.0)

    rewards = RewardSet.from_recipe(recipe, plugins, corpus)
    cider = rewards.rewards[0].fn  # fitted on the (PTB-tokenized) training references
    before = _greedy_cider(model, held_out, cider)
    stage = StageConfig(kind="scst", num_samples=4, max_new_tokens=16, temperature=0.5, lr=6e-4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=stage.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    loader = DataLoader(scst_items, batch_size=16, shuffle=True, collate_fn=collate, generator=generator)
    logs = []
    while len(logs) < SCST_STEPS:
        for batch in loader:
            logs.append(scst_step(model, batch, optimizer, scheduler, rewards, stage, grad_clip=1.0))
            if len(logs) == SCST_STEPS:
                break
    after = _greedy_cider(model, held_out, cider)
    print(f"held-out greedy CIDEr-D {before:.3f} -> {after:.3f}; {time.perf_counter() - start:.1f} s")
    for log in logs[::25]:
        print({k: round(v, 3) for k, v in log.items()})
    assert all(torch.isfinite(torch.tensor(list(log.values()))).all() for log in logs)
    assert after > before + 0.05


def test_scst_step_through_ddp_matches_the_plain_model(tmp_path, tiny_recipe, plugins):
    """DDP's forward is the SFT loss, so scst_step reaches the RSForgeModel inside and syncs gradients
    itself: on one rank, a wrapped model must take exactly the plain model's step."""
    import copy

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from rsforge.core.sample import Turn

    recipe = tiny_recipe.model_copy(update={"heads": [], "rewards": [plugins.registry.get("reward", "cider_d")
                                                                      .config(name="cider_d")]})
    torch.manual_seed(0)
    plain = RSForgeModel.from_recipe(recipe, plugins)
    wrapped_inner = copy.deepcopy(plain)
    prompt = [Turn("user", "describe the changes between the two images")]
    batch = Batch(images=torch.rand(2, 2, 3, 32, 32, generator=torch.Generator().manual_seed(0)),
                  conversations=[[*prompt, Turn("assistant", "some trees were cut down")]] * 2,
                  references=[["some trees were cut down", "there is no change"], ["a new building was built"]])
    stage = StageConfig(kind="scst", num_samples=3, max_new_tokens=6, temperature=1.0)
    corpus = batch.references

    def step(model, inner):
        optimizer = torch.optim.SGD(inner.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
        torch.manual_seed(1)
        return scst_step(model, batch, optimizer, scheduler, RewardSet.from_recipe(recipe, plugins, corpus), stage,
                         grad_clip=None)

    before = [p.detach().clone() for p in plain.parameters()]
    plain_log = step(plain, plain)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(wrapped_inner)
        ddp_log = step(ddp, wrapped_inner)
    finally:
        dist.destroy_process_group()
    assert plain_log == ddp_log
    assert {"loss", "policy_loss", "reward", "greedy_reward", "reward_cider_d", "greedy_cider_d"} <= set(plain_log)
    changed = [not torch.equal(a, p) for a, p in zip(before, plain.parameters(), strict=True)]
    assert plain_log["advantage_abs"] > 0 and any(changed)
    for a, b in zip(plain.parameters(), wrapped_inner.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_scst_step_feeds_mask_rewards_and_regularisers(tiny_recipe, plugins):
    """A mask reward gets the predicted and reference masks of each scored caption's input; a logit
    regulariser's term is logged and joins the loss."""
    from rsforge.core.sample import Turn

    specs = {name: plugins.registry.get("reward", name).config for name in ("cider_d", "mask_iou", "varentropy")}
    recipe = tiny_recipe.model_copy(update={"rewards": [
        specs["cider_d"](name="cider_d"), specs["mask_iou"](name="mask_iou"),
        specs["varentropy"](name="varentropy", weight=0.1)]})
    torch.manual_seed(0)
    model = RSForgeModel.from_recipe(recipe, plugins)
    prompt = [Turn("user", "describe the changes between the two images")]
    masks = torch.zeros(2, 32, 32)
    masks[0, :8, :8] = 1
    batch = Batch(images=torch.rand(2, 2, 3, 32, 32, generator=torch.Generator().manual_seed(0)),
                  conversations=[[*prompt, Turn("assistant", "a new building was built")]] * 2,
                  references=[[], ["there is no change"]],  # sample 0 falls back to its answer
                  masks=masks, mask_valid=torch.tensor([True, False]))
    rewards = RewardSet.from_recipe(recipe, plugins)
    assert rewards.extras_needed == {"pred_masks", "masks"} and [e.key for e in rewards.regularisers] == ["varentropy"]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    log = scst_step(model, batch, optimizer, scheduler, rewards, StageConfig(kind="scst", num_samples=2,
                                                                             max_new_tokens=5), grad_clip=1.0)
    # The mask does not depend on the caption: rollouts and greedy decode score the same IoU.
    assert log["reward_mask_iou"] == log["greedy_mask_iou"]
    assert log["reg_varentropy"] >= 0
    assert log["loss"] == pytest.approx(log["policy_loss"] + 0.1 * log["reg_varentropy"], rel=1e-4, abs=1e-5)
    assert batch_references(batch) == [["a new building was built"], ["there is no change"]]
    with pytest.raises(ValueError, match="sample 1 has neither references nor an assistant answer"):
        batch_references(Batch(images=batch.images, conversations=[batch.conversations[0], prompt],
                               references=[[], []]))


def _caption_batch(prompt_text: str = "describe the changes between the two images") -> Batch:
    from rsforge.core.sample import Turn

    prompt = [Turn("user", prompt_text)]
    answers = ["some trees were cut down", "two new buildings were built", "there is no change"]
    return Batch(images=torch.rand(3, 2, 3, 32, 32, generator=torch.Generator().manual_seed(0)),
                 conversations=[[*prompt, Turn("assistant", a)] for a in answers],
                 references=[[answers[0], "the trees have been removed"], [answers[1]], [answers[2]]])


@pytest.mark.parametrize("mode", ["rollout", "teacher_forced"])
def test_one_step_of_each_mode_scores_log_probs_without_dropout(tiny_recipe, plugins, mode):
    """Both modes score log-probs in eval mode, restore train mode, and step under bf16 autocast; the
    teacher-forced step keeps the seed's running mean of (sample - argmax) rewards."""
    specs = {name: plugins.registry.get("reward", name).config for name in ("cider_d", "length", "varentropy")}
    recipe = tiny_recipe.model_copy(update={"heads": [], "rewards": [
        specs["cider_d"](name="cider_d", normalise="minmax"), specs["length"](name="length", normalise="minmax"),
        specs["varentropy"](name="varentropy", weight=1e-4)]})
    torch.manual_seed(0)
    model = RSForgeModel.from_recipe(recipe, plugins)
    model.train()
    modes = []
    scored = model.continuation_logits

    def spy(*args, **kwargs):
        modes.append(model.training)
        return scored(*args, **kwargs)

    model.continuation_logits = spy
    batch = _caption_batch()
    rewards = RewardSet.from_recipe(recipe, plugins, batch.references)
    assert rewards.weights == {"cider_d": 0.5, "length": 0.5}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    before = [p.detach().clone() for p in model.parameters()]
    stage = StageConfig(kind="scst", scst_mode=mode, num_samples=2, max_new_tokens=6)
    log = scst_step(model, batch, optimizer, scheduler, rewards, stage, grad_clip=1.0, precision="bf16")
    assert modes == [False] and model.training
    assert all(torch.isfinite(torch.tensor(v)) for v in log.values())
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    assert {"reward_cider_d", "greedy_cider_d", "reward_length", "reg_varentropy"} <= set(log)
    assert log["loss"] == pytest.approx(log["policy_loss"] + 1e-4 * log["reg_varentropy"], rel=1e-4, abs=1e-5)
    if mode == "teacher_forced":
        # m <- 0.05 m + 0.95 mean(sample - argmax), from m = 0; each argmax caption repeats for its K samples.
        assert log["running_mean_reward"] == pytest.approx(0.95 * (log["reward"] - log["greedy_reward"]), abs=1e-5)
        assert rewards.state_dict()["running_mean_reward"] == log["running_mean_reward"]
        assert 1 <= log["sample_tokens"] <= 6  # at most the longest answer and its EOS
    else:
        assert "running_mean_reward" not in log


def test_an_scst_recipe_refuses_rewards_that_ignore_the_caption(tiny_recipe, plugins):
    from rsforge.core.errors import RecipeError

    spec = {name: plugins.registry.get("reward", name).config for name in ("cider_d", "mask_iou", "varentropy")}
    train = tiny_recipe.train.model_copy(update={"stages": [StageConfig(kind="sft"), StageConfig(kind="scst")]})
    mask_reward = tiny_recipe.model_copy(update={"train": train, "rewards": [
        spec["cider_d"](name="cider_d"), spec["mask_iou"](name="mask_iou")]})
    with pytest.raises(RecipeError, match=r"rewards\[1\] \(mask_iou\): its score does not depend on the caption"):
        RSForgeModel.from_recipe(mask_reward, plugins, device="meta")
    only_regulariser = tiny_recipe.model_copy(update={"train": train,
                                                      "rewards": [spec["varentropy"](name="varentropy")]})
    with pytest.raises(RecipeError, match="only logit regularisers"):
        RSForgeModel.from_recipe(only_regulariser, plugins, device="meta")
    # Without an scst stage a mask reward is no recipe error (nothing samples captions).
    RSForgeModel.from_recipe(mask_reward.model_copy(update={"train": tiny_recipe.train}), plugins, device="meta")


@pytest.mark.parametrize("mode", ["rollout", "teacher_forced"])
def test_sft_then_scst_with_an_encoder_decoder_lm(tiny_recipe, plugins, mode):
    """The InstructBLIP-FlanT5 layout (`hf_seq2seq_lm`: visual tokens and prompt in the T5 encoder) takes an
    SFT step and then an SCST step of each mode, rollouts and log-probs read from its decoder side."""
    decoder = plugins.registry.get("decoder", "hf_seq2seq_lm").config(
        name="hf_seq2seq_lm", tokenizer="word_level", vocab=tiny_recipe.decoder.vocab,
        config={"model_type": "t5", "d_model": 32, "d_ff": 64, "num_layers": 1, "num_decoder_layers": 1,
                "num_heads": 2, "d_kv": 16})
    cider = plugins.registry.get("reward", "cider_d").config(name="cider_d")
    recipe = tiny_recipe.model_copy(update={"heads": [], "decoder": decoder, "rewards": [cider]})
    torch.manual_seed(0)
    model = RSForgeModel.from_recipe(recipe, plugins)
    batch = _caption_batch()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    assert torch.isfinite(torch.tensor(sft_step(model, batch, optimizer, scheduler, grad_clip=1.0)["loss"]))
    before = [p.detach().clone() for p in model.decoder.parameters()]
    rewards = RewardSet.from_recipe(recipe, plugins, batch.references)
    stage = StageConfig(kind="scst", scst_mode=mode, num_samples=2, max_new_tokens=6)
    log = scst_step(model, batch, optimizer, scheduler, rewards, stage, grad_clip=1.0)
    assert all(torch.isfinite(torch.tensor(v)) for v in log.values())
    assert {"reward_cider_d", "greedy_cider_d"} <= set(log) and 1 <= log["sample_tokens"] <= 6
    assert any(not torch.equal(a, p) for a, p in zip(before, model.decoder.parameters(), strict=True))
