"""Self-critical sequence training, one optimiser step per call, in the mode `stage.scst_mode` names.

`rollout` (Rennie et al., 2017; the method the InstructBLIP-SCST README describes): for every input,
K = `stage.num_samples` free multinomial rollouts are drawn at `stage.temperature` and scored with the
recipe's rewards; the greedy decode of the same input, scored the same way, is the baseline. The loss is

    -(r(sample) - r(greedy)) * sum_t log p(token_t)     (tokens through EOS only)

averaged over all rollouts, with log p recomputed with gradient (`RSForgeModel.continuation_logits`)
under the distribution the rollouts were drawn from (logits / temperature).

`teacher_forced` (the InstructBLIP-SCST public code, `lavis/tasks/base_task.py`, `train_rl_step`): one
forward pass teacher-forced on each input's answer gives the logits at every answer position; K tokens
are drawn from each position's distribution (one sampled caption per k) and the argmax tokens are the
baseline caption. The advantage is the seed's: a = r(sample) - r(argmax), minus the running mean
m <- 0.05 m + 0.95 mean(a), standardised over the batch, (a - mean) / (std + 1e-8). The standardisation
cancels m, which is kept because the seed logs it (`running_mean_reward`, checkpointed with the reward
statistics). The loss is -a * log p(token) averaged over the sampled tokens. Unlike the seed, a caption
ends at its first sampled EOS and only the tokens through it count (the seed decodes every position,
and its `min_len` cut leaves only the first position in its policy term), the answer is encoded as its
text then the tokenizer's EOS (the decoders' default layout, not a chat template's end-of-turn), and K
may exceed the seed's 1.

Both modes run every forward pass in eval mode (dropout off), the log-prob pass included: the rollouts
are drawn without dropout, so only then are the scored log-probs those of the distribution sampled
from; the model's mode is restored afterwards. Forward passes run under autocast at `precision`
(`train.precision`), fp16 with loss scaling. The logit regularisers' weighted terms join the loss (on
the rollouts' logits, or on the teacher-forced logits over the answer). Batch statistics (the reward
normalisers, the teacher-forced mean and std) are taken over all workers' samples.

DDP: the wrapper's `forward` is the SFT loss, so the rollouts and the gradient pass go through the
underlying `RSForgeModel` (`model.module`); backward then runs under `no_sync()` and the gradients are
averaged across ranks here, once, before clipping, which is what DDP's reducer would have done.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

import torch
import torch.distributed as dist
from torch import nn

from rsforge.core.batch import Batch
from rsforge.core.interfaces import GenerationOptions
from rsforge.core.recipe import StageConfig
from rsforge.train.reward_set import RewardScores, RewardSet, gather_across_ranks
from rsforge.train.steps import apply_gradients, autocast, unwrap

# The seed's running-mean update rate (base_task.py: `alpha = 0.95`, the weight of the newest batch).
RUNNING_MEAN_RATE = 0.95
# What the step takes from the batch for `extras` itself; any other key a reward reads comes from `meta`.
BATCH_EXTRAS = ("masks", "mask_valid")


def batch_references(batch: Batch) -> list[list[str]]:
    """Each sample's reference answers: `references` where the sample has them, else the final
    assistant turn of its conversation."""
    conversations = batch.conversations
    references = batch.references or [[] for _ in conversations]
    ids = batch.ids or list(range(len(conversations)))
    out = []
    for i, (refs, conversation) in enumerate(zip(references, conversations, strict=True)):
        if not refs:
            last = conversation[-1] if conversation else None
            if last is None or last.role != "assistant":
                raise ValueError(f"scst: sample {ids[i]} has neither references nor an assistant answer to score "
                                 "rollouts against")
            refs = [last.text]
        out.append(list(refs))
    return out


def _answers(batch: Batch, references: list[list[str]]) -> list[str]:
    """The answer each sample is teacher-forced on: its final assistant turn, else its first reference."""
    return [c[-1].text if c and c[-1].role == "assistant" else refs[0]
            for c, refs in zip(batch.conversations, references, strict=True)]


def _extras(model, batch: Batch, rewards: RewardSet, k: int) -> dict:
    """What text rewards read besides the texts, one row per scored caption (K samples then the baseline
    per input): reference masks, predicted masks when a reward asks for them, and any other key a reward
    reads from each sample's `meta` (None where a sample lacks it)."""
    needed = rewards.extras_needed
    if not needed:
        return {}
    extras: dict = {key: getattr(batch, key) for key in BATCH_EXTRAS}
    if "pred_masks" in needed:
        with torch.no_grad():
            extras["pred_masks"] = model.mask_logits(batch.images, batch.instructions, features=batch.features)
    meta = batch.meta or [{} for _ in range(len(batch))]
    for key in sorted(needed - set(extras)):
        extras[key] = [m.get(key) for m in meta]
    out = {}
    for key, value in extras.items():
        if isinstance(value, torch.Tensor):
            out[key] = torch.cat([value.repeat_interleave(k, 0), value])
        else:
            out[key] = None if value is None else [v for v in value for _ in range(k)] + list(value)
    return out


def _average_gradients(model: nn.Module) -> None:
    world = dist.get_world_size()
    for param in model.parameters():
        if param.grad is not None:
            dist.all_reduce(param.grad)
            param.grad /= world


@dataclass
class _Pass:
    """What one mode's forward passes give the step: the scores of the N samples then of the baselines,
    each sample's advantage (N,), the policy loss (with gradient), the sampled captions' token mask (N, L),
    and the logits the regularisers read with their mask."""

    scores: RewardScores
    advantage: torch.Tensor
    policy: torch.Tensor
    mask: torch.Tensor
    logits: torch.Tensor
    logit_mask: torch.Tensor


def _rollout(core, batch: Batch, rewards: RewardSet, stage: StageConfig, references: list[list[str]]) -> _Pass:
    k, prompts, images = stage.num_samples, batch.prompts, batch.images
    sampled = batch.features
    if sampled is None and not core.reads_images:
        with torch.no_grad():  # one encoder pass for the greedy decode and the rollouts
            sampled = core.encode(images)
    greedy_options = GenerationOptions(max_new_tokens=stage.max_new_tokens)
    greedy = core.generate(images, prompts, greedy_options, features=sampled).texts
    rollouts = core.generate(images, prompts, replace(greedy_options, temperature=stage.temperature,
                                                      num_return_sequences=k), features=sampled)
    if rollouts.token_ids.shape[1] == 0:
        raise ValueError("scst: the rollouts are empty (no room left in the decoder context after the prompt)")
    repeated = [refs for refs in references for _ in range(k)]
    scores = rewards.score(rollouts.texts + greedy, repeated + references, _extras(core, batch, rewards, k))
    n = len(rollouts.texts)
    advantage = (scores.total[:n].view(-1, k) - scores.total[n:, None]).flatten()
    token_ids = rollouts.token_ids
    logits = core.continuation_logits(images, prompts, token_ids, features=batch.features).float() / stage.temperature
    token_logp = torch.log_softmax(logits, -1).gather(-1, token_ids[..., None])[..., 0]
    mask = rollouts.mask.to(token_logp.dtype)
    policy = -(advantage.to(token_logp) * (token_logp * mask).sum(1)).mean()
    return _Pass(scores, advantage, policy, mask, logits, rollouts.mask.bool())


def _through_first_stop(ids: torch.Tensor, mask: torch.Tensor, stop: int | None) -> torch.Tensor:
    """`mask` cut after each row's first `stop` token (kept): the tokens of the caption each row spells."""
    hits = (ids == stop) & mask if stop is not None else torch.zeros_like(mask)
    before = hits.cumsum(1) - hits.long()  # stops strictly before each position
    return mask & (before == 0)


def _texts(tokenizer, ids: torch.Tensor, mask: torch.Tensor) -> list[str]:
    stop = tokenizer.eos_token_id
    return [tokenizer.decode([t for t, m in zip(row, keep, strict=True) if m and t != stop],
                             skip_special_tokens=True).strip()
            for row, keep in zip(ids.tolist(), mask.tolist(), strict=True)]


def _teacher_forced(core, batch: Batch, rewards: RewardSet, stage: StageConfig,
                    references: list[list[str]]) -> _Pass:
    """Like `_rollout`, for the seed code's samples from teacher-forced logits (module docstring)."""
    k, tokenizer = stage.num_samples, core.decoder.tokenizer
    device = next(core.parameters()).device
    stop = tokenizer.eos_token_id
    encoded = [tokenizer(answer, add_special_tokens=False)["input_ids"] + ([stop] if stop is not None else [])
               for answer in _answers(batch, references)]
    width = max(len(ids) for ids in encoded)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop
    target = torch.tensor([ids + [pad] * (width - len(ids)) for ids in encoded], device=device)
    answer_mask = torch.tensor([[True] * len(ids) + [False] * (width - len(ids)) for ids in encoded], device=device)

    logits = core.continuation_logits(batch.images, batch.prompts, target, features=batch.features).float()
    logits = logits / stage.temperature
    logp = torch.log_softmax(logits, -1)  # (B, L, V)
    b, length, vocab = logp.shape
    with torch.no_grad():
        drawn = torch.multinomial(logp.exp().reshape(-1, vocab), k, replacement=True).view(b, length, k)
        argmax = logits.argmax(-1)
    sampled = drawn.permute(0, 2, 1).reshape(b * k, length)  # input-major, as rollouts are
    sample_mask = _through_first_stop(sampled, answer_mask.repeat_interleave(k, 0), stop)
    greedy_mask = _through_first_stop(argmax, answer_mask, stop)
    texts = _texts(tokenizer, sampled, sample_mask) + _texts(tokenizer, argmax, greedy_mask)
    repeated = [refs for refs in references for _ in range(k)]
    scores = rewards.score(texts, repeated + references, _extras(core, batch, rewards, k))
    n = b * k
    difference = scores.total[:n] - scores.total[n:].repeat_interleave(k)
    everyone = gather_across_ranks(difference).double()
    rewards.running_mean_reward = ((1 - RUNNING_MEAN_RATE) * rewards.running_mean_reward
                                   + RUNNING_MEAN_RATE * float(everyone.mean()))
    centred = everyone - rewards.running_mean_reward
    std = float(centred.std()) if centred.numel() > 1 else 0.0
    advantage = ((difference.double() - rewards.running_mean_reward - float(centred.mean())) / (std + 1e-8)).float()
    token_logp = logp.gather(-1, drawn).permute(0, 2, 1).reshape(n, length)
    mask = sample_mask.to(token_logp.dtype)
    policy = -(advantage.to(token_logp)[:, None] * token_logp * mask).sum() / mask.sum().clamp(min=1)
    return _Pass(scores, advantage, policy, mask, logits, answer_mask)


PASSES = {"rollout": _rollout, "teacher_forced": _teacher_forced}


def scst_step(model: nn.Module, batch: Batch, optimizer: torch.optim.Optimizer, scheduler, rewards: RewardSet,
              stage: StageConfig, *, grad_clip: float | None, precision: str = "fp32",
              scaler: torch.amp.GradScaler | None = None) -> dict[str, float]:
    """One SCST step on a collated batch; returns the losses, each reward's mean raw score over the
    samples (`reward_<name>`) and over the baselines (`greedy_<name>`), the combined rewards, the mean
    sampled caption length, each regulariser's value (`reg_<name>`) and, teacher-forced, the running
    mean reward."""
    core = unwrap(model)
    if core.decoder is None:
        raise ValueError(f"scst: model '{core.recipe.name}' has no decoder to sample captions from")
    references = batch_references(batch)
    device = next(core.parameters()).device
    was_training = core.training
    core.eval()
    try:
        with autocast(precision, device):
            step = PASSES[stage.scst_mode](core, batch, rewards, stage, references)
        regulariser, reg_values = rewards.regularise(step.logits, step.logit_mask)
        loss = step.policy + regulariser
        _optimise(model, core, loss, optimizer, scheduler, grad_clip=grad_clip, scaler=scaler)
    finally:
        core.train(was_training)
    return _log(step, loss, reg_values, rewards, stage)


def _optimise(model, core, loss: torch.Tensor, optimizer, scheduler, *, grad_clip: float | None, scaler) -> None:
    optimizer.zero_grad(set_to_none=True)
    scaled = scaler.scale(loss) if scaler is not None else loss
    distributed = hasattr(model, "no_sync") and dist.is_available() and dist.is_initialized()
    with model.no_sync() if distributed else contextlib.nullcontext():
        scaled.backward()
    if distributed:
        _average_gradients(core)
    apply_gradients(core, optimizer, scheduler, grad_clip=grad_clip, scaler=scaler)


def _log(step: _Pass, loss: torch.Tensor, reg_values: dict[str, float], rewards: RewardSet,
         stage: StageConfig) -> dict[str, float]:
    scores, n = step.scores, len(step.advantage)
    out = {"loss": float(loss.detach()), "policy_loss": float(step.policy.detach()),
           "reward": float(scores.total[:n].mean()), "greedy_reward": float(scores.total[n:].mean()),
           "advantage_abs": float(step.advantage.abs().mean()), "sample_tokens": float(step.mask.sum(1).mean())}
    if stage.scst_mode == "teacher_forced":
        out["running_mean_reward"] = rewards.running_mean_reward
    for name, values in scores.raw.items():
        out[f"reward_{name}"] = float(values[:n].mean())
        out[f"greedy_{name}"] = float(values[n:].mean())
    for name, value in reg_values.items():
        out[f"reg_{name}"] = value
    return out
