"""A timm backbone as an rsforge encoder; the same module runs on both dates (shared weights).

Tokens: a ViT's final patch tokens (class/register tokens dropped unless `keep_prefix_tokens`);
a CNN's or Swin's last feature map, one token per pixel. Maps: the outputs of the blocks/stages
named by `map_layers`, as (B, C, H, W), shallow to deep."""

from __future__ import annotations

import difflib
from pathlib import Path

import timm
import torch
from timm.models import get_pretrained_cfg

from rsforge.core.interfaces import Encoder
from rsforge.encoders.configs import TimmEncoderConfig
from rsforge.encoders.weights import LoadReport, adapt_stem, fit_state_dict, read_state_dict, train_last_blocks


def normalise_layers(layers: list[int], count: int, *, what: str) -> list[int]:
    """Map indices (negative from the end) into 0..count-1, sorted shallow to deep."""
    bad = [i for i in layers if not -count <= i < count]
    if bad:
        raise ValueError(f"map_layers: {bad} out of range; {what} has {count} (indices -{count}..{count - 1})")
    resolved = sorted({i % count for i in layers})
    if len(resolved) != len(layers):
        raise ValueError(f"map_layers: {layers} names a layer twice")
    return resolved


def _as_list(value: str | tuple | list | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


class TimmEncoder(Encoder):
    def __init__(self, config: TimmEncoderConfig) -> None:
        super().__init__()
        self.config = config
        if not timm.is_model(config.model_name):
            close = difflib.get_close_matches(config.model_name.split(".")[0], timm.list_models(), n=5)
            raise ValueError(f"model_name: timm has no model '{config.model_name}'"
                             + (f"; close matches: {', '.join(close)}" if close else ""))
        kwargs = dict(config.model_kwargs)
        # Models with a fixed input size (ViT, EVA, Swin) are built for image_size; CNNs take any size.
        cfg = get_pretrained_cfg(config.model_name)
        if cfg is not None and cfg.fixed_input_size:
            kwargs.setdefault("img_size", config.image_size)
        # With pretrained=True timm itself adapts the stem to in_chans (the same 'repeat' rule).
        self.backbone = timm.create_model(
            config.model_name, pretrained=config.pretrained is True, num_classes=0, in_chans=config.in_chans, **kwargs
        )
        if not hasattr(self.backbone, "forward_intermediates"):
            raise ValueError(f"model_name: timm's {config.model_name} has no forward_intermediates (no maps)")
        self.load_report = LoadReport()
        self.stem_adapted: str | None = None
        if isinstance(config.pretrained, str):
            self._load_weights(Path(config.pretrained))

        info = self.backbone.feature_info
        info = info if isinstance(info, list) else info.info
        # Drop what the tokens and maps never read (pooling, fc_norm, attention pool): a trainable
        # parameter without a gradient would stall DDP.
        self.backbone.prune_intermediate_layers([len(info) - 1], prune_norm=False, prune_head=True)
        self._map_indices = normalise_layers(config.layers, len(info), what=f"timm {config.model_name}")
        self.map_channels = [info[i]["num_chs"] for i in self._map_indices]

        if config.freeze:
            self.backbone.requires_grad_(False)
        elif config.trainable_blocks is not None:
            params = dict(self.backbone.named_parameters())
            blocks = [f["module"] for f in info if any(n.startswith(f["module"] + ".") for n in params)]
            train_last_blocks(self.backbone, blocks, config.trainable_blocks, what=f"timm {config.model_name}")
        frozen = any(not p.requires_grad for p in self.backbone.parameters())
        # Frozen weights that the recipe can fetch again need not be saved with the model.
        self.weights_from_source = bool(config.pretrained) and frozen

        self.image_size = config.image_size
        self.interpolation = config.interpolation
        self.in_chans = config.in_chans
        self.out_dim = self.backbone.num_features
        self.num_prefix_tokens = getattr(self.backbone, "num_prefix_tokens", 0)
        # Swin returns its last map channels-last; CNNs channels-first.
        self._final_fmt = getattr(self.backbone, "output_fmt", "NCHW")
        self.register_buffer("mean", torch.tensor(config.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, -1, 1, 1), persistent=False)

    def _load_weights(self, path: Path) -> None:
        state = read_state_dict(path)
        own = self.backbone.state_dict()
        pcfg = self.backbone.pretrained_cfg
        # The encoder has no classifier: a checkpoint's classifier weights are not a misfit.
        heads = tuple(f"{c}." for c in _as_list(pcfg.get("classifier")))
        state = {k: v for k, v in state.items() if k in own or not k.startswith(heads)}
        for conv in _as_list(pcfg.get("first_conv")):
            self.stem_adapted = adapt_stem(state, f"{conv}.weight", self.config.in_chans,
                                           self.config.stem_adaptation) or self.stem_adapted
        self.load_report = fit_state_dict(self.backbone, state, source=str(path),
                                          what=f"timm '{self.config.model_name}'", strict=self.config.strict_load)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        self.check_input(images)
        x = (images - self.mean) / self.std
        final, maps = self.backbone.forward_intermediates(x, indices=self._map_indices, output_fmt="NCHW")
        if final.dim() == 3:  # ViT: one token per patch, class/register tokens dropped unless asked for
            tokens = final if self.config.keep_prefix_tokens else final[:, self.num_prefix_tokens:]
        elif self._final_fmt == "NHWC":
            tokens = final.flatten(1, 2)
        else:
            tokens = final.flatten(2).transpose(1, 2)
        return tokens, list(maps)
