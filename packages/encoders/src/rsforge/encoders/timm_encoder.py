"""A timm backbone as an rsforge encoder; the same module runs on both dates (shared weights)."""

from __future__ import annotations

from pathlib import Path

import timm
import torch

from rsforge.core.features import Encoder
from rsforge.encoders.configs import TimmEncoderConfig


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: encoder weights file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    # weights_only refuses pickled code objects: a checkpoint can carry tensors, nothing else.
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state.get("model", state))


class TimmEncoder(Encoder):
    def __init__(self, config: TimmEncoderConfig) -> None:
        super().__init__()
        self.config = config
        kwargs = dict(config.model_kwargs)
        # Only ViT-style models take img_size; CNNs accept any size as they are.
        if "vit" in config.model_name or "eva" in config.model_name or "deit" in config.model_name:
            kwargs.setdefault("img_size", config.image_size)
        self.backbone = timm.create_model(
            config.model_name, pretrained=config.pretrained is True, num_classes=0, **kwargs
        )
        if isinstance(config.pretrained, str):
            self._load_weights(Path(config.pretrained))
        if config.freeze:
            self.backbone.requires_grad_(False)
        self.image_size = config.image_size
        self.out_dim = self.backbone.num_features
        self.num_prefix_tokens = getattr(self.backbone, "num_prefix_tokens", 0)
        info = self.backbone.feature_info
        channels = [f["num_chs"] for f in (info if isinstance(info, list) else info.info)]
        self.map_channels = channels[-config.num_maps:]
        self._map_indices = list(range(len(channels)))[-config.num_maps:]
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, 3, 1, 1), persistent=False)

    def _load_weights(self, path: Path) -> None:
        state = load_state_dict(path)
        own = self.backbone.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        mismatched = [f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                      for k in own if k in state and state[k].shape != own[k].shape]
        if missing or unexpected or mismatched:
            raise ValueError(
                f"{path} does not fit timm '{self.config.model_name}': missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}, shape mismatch {mismatched[:5]}"
            )
        self.backbone.load_state_dict(state)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"encoder expects {self.image_size}x{self.image_size} images, got {tuple(images.shape)}")
        x = (images - self.mean) / self.std
        final, maps = self.backbone.forward_intermediates(x, indices=self._map_indices, output_fmt="NCHW")
        if final.dim() == 4:  # CNN: the last map's pixels are the tokens
            tokens = final.flatten(2).transpose(1, 2)
        else:  # ViT: drop class/register tokens, keep one token per patch
            tokens = final[:, self.num_prefix_tokens:]
        return tokens, list(maps)
