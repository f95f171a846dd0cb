"""Loading weights into a tower: read a file safely, adapt the stem to the band count, check that
every key fits (strict) or load what fits and report the rest; freeze all but the last blocks."""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch
from timm.models import adapt_input_conv
from torch import nn

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".bin")


@dataclass
class LoadReport:
    """What a (partial) load left out; empty lists after a strict load."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        return (f"missing {self.missing[:5]}, unexpected {self.unexpected[:5]}, "
                f"shape mismatch {self.mismatched[:5]}")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: encoder weights file not found")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ValueError(f"{path}: encoder weights must be {', '.join(WEIGHT_SUFFIXES)}")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        # weights_only refuses pickled code objects: a checkpoint can carry tensors, nothing else.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(f"{path}: not a readable weights file (torch.load with weights_only=True refuses it: it "
                         "is corrupt, or holds more than tensors)") from None
    except (SafetensorError, OSError, RuntimeError, EOFError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ValueError(f"{path}: not a readable weights file ({type(exc).__name__}: {first})") from None
    return state.get("state_dict", state.get("model", state))


def adapt_stem(state: dict[str, torch.Tensor], key: str, in_chans: int, how: str) -> str | None:
    """Give the stem conv weight `key` `in_chans` input bands; returns what was done (or None)."""
    weight = state.get(key)
    if weight is None or weight.dim() != 4 or weight.shape[1] == in_chans or how == "none":
        return None
    state[key] = adapt_input_conv(in_chans, weight.float()).to(weight.dtype)
    return f"{key}: {weight.shape[1]} -> {in_chans} bands (repeat, x{weight.shape[1]}/{in_chans})"


def fit_state_dict(module: nn.Module, state: dict[str, torch.Tensor], *, source: str, what: str,
                   strict: bool) -> LoadReport:
    """Load `state` into `module`. Strict: any missing/unexpected/mis-shaped key is an error naming
    the first ones. Not strict: load the keys that fit, log and return the others."""
    own = module.state_dict()
    report = LoadReport(
        missing=[k for k in own if k not in state],
        unexpected=[k for k in state if k not in own],
        mismatched=[f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                    for k in own if k in state and state[k].shape != own[k].shape],
    )
    if report and strict:
        raise ValueError(f"{source} does not fit {what}: {report} (set strict_load: false to load what fits)")
    fitting = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    module.load_state_dict(fitting, strict=False)
    if report:
        log.warning("%s loaded partly into %s: %s", source, what, report)
    return report


def train_last_blocks(module: nn.Module, blocks: list[str], count: int, *, what: str) -> None:
    """Freeze `module` except the last `count` of `blocks` (module paths, in order) and every
    parameter registered after the first of them (the final norm): a block's output feeds those."""
    if count > len(blocks):
        raise ValueError(f"trainable_blocks: {count}, but {what} has {len(blocks)} blocks")
    module.requires_grad_(False)
    if count == 0:
        return
    first = blocks[len(blocks) - count] + "."
    reached = False
    for name, param in module.named_parameters():
        reached = reached or name.startswith(first)
        param.requires_grad_(reached)
