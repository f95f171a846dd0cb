"""Self-critical sequence training (Rennie et al., 2017), one optimiser step per call.

For every input, K = `stage.num_samples` free multinomial rollouts are drawn at `stage.temperature`
and scored with the recipe's rewards; the greedy decode of the same input, scored the same way, is
the baseline. The policy loss is

    -(r(sample) - r(greedy)) * sum_t log p(token_t)     (tokens through EOS only)

averaged over all rollouts, plus the logit regularisers' weighted terms. The log-probabilities are
recomputed with gradient (`RSForgeModel.continuation_logits`) under the distribution the rollouts were drawn from
(logits / temperature), through the encoder and bridges too.

DDP: the wrapper's `forward` is the SFT loss, so the rollouts and the gradient pass go through the
underlying `RSForgeModel` (`model.module`); backward then runs under `no_sync()` and the gradients are
averaged across ranks here, once, before clipping, which is what DDP's reducer would have done.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.distributed as dist
from torch import nn

from rsforge.core.batch import Batch
from rsforge.core.interfaces import GenerationOptions
from rsforge.core.recipe import StageConfig
from rsforge.train.reward_set import RewardSet
from rsforge.train.steps import unwrap


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


def _extras(model, batch: Batch, rewards: RewardSet, k: int) -> dict:
    """What text rewards read besides the texts, one row per scored caption (K rollouts then the greedy
    decode per input): reference masks, and predicted masks when a reward asks for them."""
    needed = rewards.extras_needed
    if not needed:
        return {}
    extras = {"masks": batch.masks, "mask_valid": batch.mask_valid}
    if "pred_masks" in needed:
        with torch.no_grad():
            extras["pred_masks"] = model.mask_logits(batch.images, batch.instructions, features=batch.features)
    return {key: None if value is None else torch.cat([value.repeat_interleave(k, 0), value])
            for key, value in extras.items()}


def _average_gradients(model: nn.Module) -> None:
    world = dist.get_world_size()
    for param in model.parameters():
        if param.grad is not None:
            dist.all_reduce(param.grad)
            param.grad /= world


def scst_step(model: nn.Module, batch: Batch, optimizer: torch.optim.Optimizer, scheduler, rewards: RewardSet,
              stage: StageConfig, *, grad_clip: float | None) -> dict[str, float]:
    """One SCST step on a collated batch; returns the losses, each reward's mean raw score over the
    rollouts (`reward_<name>`) and over the greedy decodes (`greedy_<name>`), the combined rewards and
    the mean rollout length."""
    core = unwrap(model)
    if core.decoder is None:
        raise ValueError(f"scst: model '{core.recipe.name}' has no decoder to sample captions from")
    k, temperature = stage.num_samples, stage.temperature
    prompts = batch.prompts
    references = batch_references(batch)
    images, features = batch.images, batch.features

    # Rollouts and baseline, without gradient and without dropout.
    core.eval()
    sampled = features
    if sampled is None and not core.reads_images:
        with torch.no_grad():  # one encoder pass for the greedy decode and the rollouts
            sampled = core.encode(images)
    greedy_options = GenerationOptions(max_new_tokens=stage.max_new_tokens)
    greedy = core.generate(images, prompts, greedy_options, features=sampled).texts
    rollouts = core.generate(images, prompts, replace(greedy_options, temperature=temperature, num_return_sequences=k),
                             features=sampled)
    if rollouts.token_ids.shape[1] == 0:
        raise ValueError("scst: the rollouts are empty (no room left in the decoder context after the prompt)")
    repeated = [refs for refs in references for _ in range(k)]
    scores = rewards.score(rollouts.texts + greedy, repeated + references, _extras(core, batch, rewards, k))
    n = len(rollouts.texts)
    advantage = (scores.total[:n].view(-1, k) - scores.total[n:, None]).flatten()

    # The gradient pass: log p of each rollout under the sampling distribution.
    core.train()
    token_ids, mask = rollouts.token_ids, rollouts.mask
    logits = core.continuation_logits(images, prompts, token_ids, features=features).float() / temperature
    token_logp = torch.log_softmax(logits, -1).gather(-1, token_ids[..., None])[..., 0]
    mask = mask.to(token_logp.dtype)
    sequence_logp = (token_logp * mask).sum(1)
    policy = -(advantage.to(sequence_logp) * sequence_logp).mean()
    regulariser, reg_values = rewards.regularise(logits, mask.bool())
    loss = policy + regulariser

    optimizer.zero_grad(set_to_none=True)
    if hasattr(model, "no_sync") and dist.is_available() and dist.is_initialized():
        with model.no_sync():
            loss.backward()
        _average_gradients(core)
    else:
        loss.backward()
    if grad_clip:
        nn.utils.clip_grad_norm_(core.parameters(), grad_clip)
    optimizer.step()
    scheduler.step()

    out = {"loss": float(loss.detach()), "policy_loss": float(policy.detach()),
           "reward": float(scores.total[:n].mean()), "greedy_reward": float(scores.total[n:].mean()),
           "advantage_abs": float(advantage.abs().mean()), "sample_tokens": float(mask.sum(1).mean())}
    for name, values in scores.raw.items():
        out[f"reward_{name}"] = float(values[:n].mean())
        out[f"greedy_{name}"] = float(values[n:].mean())
    for name, value in reg_values.items():
        out[f"reg_{name}"] = value
    return out
