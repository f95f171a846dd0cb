"""Pure-torch training steps. Ray (`worker_loop`) only distributes them; tests can call them directly.

One optimizer step = `grad_accum_steps` micro-batches, each under autocast at the recipe's precision,
with the loss of the stage kind: `sft` (everything the model weighs), `mask` (the mask heads only).
"""

from __future__ import annotations

import contextlib
import random
import re
from collections.abc import Iterable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from transformers import get_cosine_schedule_with_warmup

from rsforge.core.batch import Batch, Losses
from rsforge.core.recipe import TrainConfig

PART_KEY = re.compile(r"^(encoder|decoder|bridges|heads)(?:\[(\d+)\])?$")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Python, numpy and torch (+ CUDA) generator states as tensors and numbers only, so a checkpoint
    holding them loads with `torch.load(weights_only=True)`."""
    version, py_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "cached": cached},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def unwrap(model: nn.Module) -> nn.Module:
    """The module under a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model)


def _module_prefix(key: str, model: nn.Module) -> str:
    """`bridges[1]` -> `bridges.1.`: the parameter-name prefix of a recipe part path; a clear error
    for a key that names no part of this model."""
    match = PART_KEY.match(key)
    parts = [path for path, *_ in model.parameter_counts()] if hasattr(model, "parameter_counts") else []
    known = sorted({p.split("[")[0] for p in parts} | set(parts))
    if match is None or (parts and key not in known):
        raise ValueError(f"train.lr_multipliers.{key}: not a part of this model; known parts: {', '.join(known)}")
    kind, index = match.groups()
    return f"{kind}.{index}." if index is not None else f"{kind}."


def lr_multiplier_of(name: str, prefixes: dict[str, float]) -> float:
    """The factor of the longest prefix that `name` starts with (1.0 without one)."""
    best = max((p for p in prefixes if name.startswith(p)), key=len, default=None)
    return 1.0 if best is None else prefixes[best]


def build_optimizer(
    model: nn.Module, config: TrainConfig, *, lr: float | None = None, only: set[str] | None = None
) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters (`only`: just those names), one group per (lr multiplier,
    decay); biases and norm weights (1-d tensors) get no weight decay, as is standard."""
    base_lr = lr if lr is not None else config.lr
    bad = [key for key, factor in config.lr_multipliers.items() if factor < 0]
    if bad:
        raise ValueError(f"train.lr_multipliers.{bad[0]}: must be >= 0, got {config.lr_multipliers[bad[0]]}")
    prefixes = {_module_prefix(key, model): factor for key, factor in config.lr_multipliers.items()}
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad or (only is not None and name not in only):
            continue
        groups.setdefault((lr_multiplier_of(name, prefixes), param.dim() >= 2), []).append(param)
    if not groups:
        raise ValueError("the model has no trainable parameters for this stage")
    return torch.optim.AdamW(
        [{"params": params, "lr": base_lr * factor, "weight_decay": config.weight_decay if decay else 0.0}
         for (factor, decay), params in sorted(groups.items())],
        lr=base_lr,
    )


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int):
    """Linear warmup from zero, then cosine decay to zero at `total_steps` (each group keeps its own base lr)."""
    warmup = min(config.warmup_steps, max(total_steps - 1, 0))
    return get_cosine_schedule_with_warmup(optimizer, warmup, total_steps)


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse what the device cannot run, naming the recipe field."""
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"train.precision: fp16 needs a CUDA device (this worker runs on {device.type}); "
                         "use bf16 or fp32")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("train.precision: bf16 is not supported by this GPU; use fp16 or fp32")


def make_grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16 gradients underflow without loss scaling; bf16 keeps fp32's range and needs none."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def autocast(precision: str, device: torch.device):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[precision])


def mask_objective(model: nn.Module, losses: Losses) -> torch.Tensor:
    """The mask heads' losses, weighted as the recipe weighs them."""
    core = unwrap(model)
    total = losses.total.new_zeros(())
    for head, config in zip(core.heads, core.recipe.heads, strict=True):
        if head.predicts_mask and f"mask_{config.name}" in losses.heads:
            total = total + config.weight * losses.heads[f"mask_{config.name}"]
    return total


def stage_objective(model: nn.Module, losses: Losses, kind: str) -> torch.Tensor:
    """The loss a stage optimises: `sft` everything the model weighs, `mask` the mask heads' weighted losses."""
    if kind == "sft":
        return losses.total
    if kind == "mask":
        # A zero-weighted rest keeps every used parameter in the graph: DistributedDataParallel then
        # reduces a (zero) gradient for the decoder instead of waiting for one that never comes.
        return mask_objective(model, losses) + 0.0 * losses.total
    raise ValueError(f"stage kind '{kind}' has no supervised objective")


@contextlib.contextmanager
def probing(model: nn.Module):
    """A probe pass that leaves no trace: it draws no random numbers that the training steps would then
    miss (dropout; a run resumed mid-stage probes again and must continue the same streams), and the
    BatchNorm statistics it updates are put back."""
    buffers = {name: buffer.clone() for name, buffer in model.named_buffers()}
    device = next(model.parameters()).device
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        yield
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            buffer.copy_(buffers[name])


def _reached(model: nn.Module, objective: torch.Tensor) -> set[str]:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not objective.requires_grad:
        return set()
    grads = torch.autograd.grad(objective, [p for _, p in named], allow_unused=True)
    return {n for (n, _), g in zip(named, grads, strict=True) if g is not None}


def objective_parameters(model: nn.Module, batch: Batch) -> set[str]:
    """Names of the trainable parameters that the mask heads' losses reach on `batch`: a mask stage's
    optimizer holds only these, so weight decay leaves the parts it does not train (the decoder) alone."""
    core = unwrap(model)
    with probing(core):
        objective = mask_objective(core, core(batch))
        if not objective.requires_grad:
            raise ValueError("a mask stage needs a mask head and training samples with masks; this batch has none")
        return _reached(core, objective)


def unreachable_parameters(model: nn.Module, batch: Batch) -> list[str]:
    """Trainable parameters that the model's full loss does not reach on `batch`, which should hold every
    kind of target the data has (a sample with a mask, one without): weights that no loss can ever train,
    such as a CNN's last stage when only its earlier maps are read. DistributedDataParallel waits for a
    gradient of every trainable parameter, so these are frozen before it wraps the model."""
    core = unwrap(model)
    with probing(core):
        reached = _reached(core, core(batch).total)
    return [n for n, p in core.named_parameters() if p.requires_grad and n not in reached]


def train_step(
    model: nn.Module, batches: Batch | Iterable[Batch], optimizer: torch.optim.Optimizer, scheduler, *,
    grad_clip: float | None, kind: str = "sft", precision: str = "fp32",
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, float]:
    """One optimizer step over one batch or a list of micro-batches (gradient accumulation); returns the
    losses averaged over the micro-batches, `loss` being the stage's objective."""
    batches = [batches] if isinstance(batches, Batch) else list(batches)
    core = unwrap(model)
    device = next(core.parameters()).device
    model.train()
    optimizer.zero_grad(set_to_none=True)
    totals: dict[str, float] = {}
    for i, batch in enumerate(batches):
        # DDP all-reduces on every backward; the accumulating ones skip it, the last one reduces the sum.
        sync = model.no_sync() if i < len(batches) - 1 and hasattr(model, "no_sync") else contextlib.nullcontext()
        with sync:
            with autocast(precision, device):
                losses = model(batch)
                objective = stage_objective(core, losses, kind)
            scaled = objective.float() / len(batches)
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        values = {**losses.values(), "loss": float(objective.detach())}
        for key, value in values.items():
            totals[key] = totals.get(key, 0.0) + value / len(batches)
    apply_gradients(core, optimizer, scheduler, grad_clip=grad_clip, scaler=scaler)
    return totals


def apply_gradients(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, *, grad_clip: float | None,
                    scaler: torch.amp.GradScaler | None) -> None:
    """The end of every optimizer step: unscale (fp16), clip the gradient norm, step, advance the schedule."""
    if scaler is not None:
        scaler.unscale_(optimizer)
    if grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    scheduler.step()


def mean_across_ranks(values: dict[str, float]) -> dict[str, float]:
    """Each key's mean over the ranks that logged it (a rank whose batch had no mask logs no mask loss)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    gathered: list[dict[str, float] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, values)
    keys = dict.fromkeys(k for rank_values in gathered for k in rank_values)
    return {k: sum(v[k] for v in gathered if k in v) / sum(k in v for v in gathered) for k in keys}


def sft_step(
    model: nn.Module, batch: Batch, optimizer: torch.optim.Optimizer, scheduler, *, grad_clip: float | None
) -> dict[str, float]:
    """One supervised step: answer-only cross-entropy plus any mask losses, as the model weighs them."""
    return train_step(model, batch, optimizer, scheduler, grad_clip=grad_clip)


@torch.no_grad()
def evaluation_loss(model: nn.Module, batches: Iterator[Batch], *, kind: str = "sft", precision: str = "fp32") -> float:
    """Mean stage objective over `batches` in eval mode (the val loss a checkpoint can be ranked by)."""
    core = unwrap(model)
    device = next(core.parameters()).device
    was_training = core.training
    core.eval()
    total, count = 0.0, 0
    for batch in batches:
        with autocast(precision, device):
            total += float(stage_objective(core, core(batch), kind))
        count += 1
    core.train(was_training)
    if count == 0:
        raise ValueError("the validation split makes no batch to compute a val_loss on")
    return total / count
