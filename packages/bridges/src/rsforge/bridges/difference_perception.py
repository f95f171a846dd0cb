"""DeltaVLM's difference perception (IDPM) with cross-semantic relation measuring (CSRM).

Both dates share every weight. With D = F_after - F_before, for each date t:
    C_t = tanh(W1 D + W2 F_t + b_c)       contextualising
    G_t = sigmoid(W3 D + W4 F_t + b_g)    gating: how relevant each feature is to the change
    F'_t = G_t * C_t                      filtering
    E_t = Linear([F_t; D; F'_t])
and the output is the token sequence [E_before, E_after] (B, 1, 2N, out_dim): the memory an
instruction-aware Q-Former reads next. Unlike DeltaVLM's public code, which runs CSRM only when
generating (its training forward feeds the plain concatenated ViT features to the Q-Former), this
bridge runs the same path in training and generation, so CSRM is trained.

Weight files (`weights`, safetensors; a file or a folder of shards) in DeltaVLM's names (its
`Blip2VicunaInstruct` attributes, as `checkpoint_best.pth` holds them) or this bridge's own:

    this bridge         DeltaVLM
    norm.* (norm_input) ln_vision.*
    context_diff.weight context1.weight       (no bias)
    context_feat.*      context2.*
    gate_diff.weight    gate1.weight          (no bias)
    gate_feat.*         gate2.*
    fuse.*              context3.*

Every other tensor of the file (ViT, Q-Former, LLM) is skipped unread.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from rsforge.bridges.configs import DifferencePerceptionConfig
from rsforge.bridges.weights import read_part
from rsforge.core.errors import weights_misfit
from rsforge.core.interfaces import Bridge, VisualFeatures


class DifferencePerception(Bridge):
    bitemporal = True

    def __init__(self, config: DifferencePerceptionConfig) -> None:
        super().__init__()
        if config.in_dim is None:
            raise ValueError("difference_perception: in_dim is not set (the assembler fills it from the encoder)")
        d = self.in_dim = config.in_dim
        self.out_dim = config.out_dim or d
        # ln_vision in DeltaVLM: one LayerNorm, shared by both dates, on the ViT output.
        self.norm = nn.LayerNorm(d) if config.norm_input else nn.Identity()
        # W1, W3 read D and carry no bias; W2, W4 read F_t and carry the bias b (one bias per map, as in
        # DeltaVLM's context1/context2 and gate1/gate2).
        self.context_diff = nn.Linear(d, d, bias=False)
        self.context_feat = nn.Linear(d, d)
        self.gate_diff = nn.Linear(d, d, bias=False)
        self.gate_feat = nn.Linear(d, d)
        self.dropout = nn.Dropout(config.dropout)
        self.fuse = nn.Linear(3 * d, self.out_dim)
        # On the meta device (shape checks of full-size recipes) nothing is read from disk.
        if config.weights is not None and torch.empty(()).device.type != "meta":
            self.load_weights(config.weights)

    def _date(self, feat: torch.Tensor, diff: torch.Tensor) -> torch.Tensor:
        context = self.dropout(torch.tanh(self.context_diff(diff) + self.context_feat(feat)))
        gate = self.dropout(torch.sigmoid(self.gate_diff(diff) + self.gate_feat(feat)))
        return self.fuse(torch.cat([feat, diff, gate * context], dim=-1))

    def forward(self, features: VisualFeatures, instructions: list[str] | None = None) -> VisualFeatures:
        if features.num_images != 2:
            raise ValueError(f"difference_perception needs a before/after pair, got {features.num_images} image(s)")
        if features.dim != self.in_dim:
            raise ValueError(f"difference_perception expects tokens of width {self.in_dim}, got {features.dim}")
        before, after = self.norm(features.tokens[:, 0]), self.norm(features.tokens[:, 1])
        diff = after - before
        tokens = torch.cat([self._date(before, diff), self._date(after, diff)], dim=1)
        return VisualFeatures(tokens=tokens.unsqueeze(1), maps=features.maps)

    def load_weights(self, path: str | Path) -> None:
        """Load released IDPM/CSRM weights (DeltaVLM's or this bridge's names, see the module docstring) from
        safetensors; errors name every missing, unexpected and mis-shaped tensor."""
        own = self.state_dict()

        def rename(key: str) -> str | None:  # None: outside this part, or ln_vision with norm_input false
            name = _bridge_key(key)
            skip = name is None or (name.startswith("norm.") and not isinstance(self.norm, nn.LayerNorm))
            return None if skip else name

        loaded, unexpected, mismatched = read_part(path, own, rename, what="difference_perception")
        misfit = weights_misfit([k for k in own if k not in loaded], unexpected, mismatched)
        if misfit:
            raise ValueError(f"difference_perception weights {path} do not fit this bridge - {misfit}")
        self.load_state_dict(loaded)


_DELTAVLM_NAMES = {"ln_vision": "norm", "context1": "context_diff", "context2": "context_feat",
                   "gate1": "gate_diff", "gate2": "gate_feat", "context3": "fuse"}
_OWN = tuple(f"{name}." for name in _DELTAVLM_NAMES.values())


def _bridge_key(key: str) -> str | None:
    """A weight file's key -> this bridge's key, or None for tensors outside it."""
    module, dot, rest = key.partition(".")
    if dot and module in _DELTAVLM_NAMES:
        return f"{_DELTAVLM_NAMES[module]}.{rest}"
    return key if key.startswith(_OWN) else None
