"""A Hugging Face vision tower (CLIP, SigLIP, DINOv2, ...) as an rsforge encoder.

Tokens: the tower's last hidden state (after its final norm where the tower applies one: SigLIP,
DINOv2; CLIP's last hidden state has none), patch tokens only: the class token (CLIP, DINOv2) and
register tokens are dropped unless `keep_prefix_tokens`. Maps: the outputs of the encoder layers
named by `map_layers` (0 = first layer, -1 = last; before any final norm), patch tokens reshaped
to (B, D, H/patch, W/patch), shallow to deep."""

from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path

import torch
from torch import nn

from rsforge.core.interfaces import Encoder
from rsforge.encoders.configs import IMAGENET_MEAN, IMAGENET_STD, HFVisionConfig
from rsforge.encoders.timm_encoder import normalise_layers
from rsforge.encoders.weights import (
    WEIGHT_SUFFIXES,
    LoadReport,
    adapt_stem,
    fit_state_dict,
    read_state_dict,
    train_last_blocks,
)

try:
    from transformers import AutoConfig, PreTrainedModel
    from transformers.models.auto.modeling_auto import MODEL_MAPPING
except ImportError as exc:  # transformers is an extra: the timm encoder lives without it
    raise ImportError("the hf_vision encoder needs transformers: pip install 'rsforge-encoders[hf]'") from exc

log = logging.getLogger(__name__)

# Parameters that feed only outputs rsforge never reads (pooled output, masked-image modelling):
# they are frozen, since a trainable parameter without a gradient would stall DDP.
UNUSED = {
    "CLIPVisionModel": ("post_layernorm.",),
    "SiglipVisionModel": ("head.",),
    "Dinov2Model": ("embeddings.mask_token",),
}
PIL_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def _tower_class(config) -> type[PreTrainedModel]:
    if type(config) in MODEL_MAPPING:
        return MODEL_MAPPING[type(config)]
    # BLIP-2 / InstructBLIP vision towers (EVA-ViT-g as released in those checkpoints) have no Auto entry.
    from transformers import Blip2VisionModel, InstructBlipVisionModel

    blip = {"blip_2_vision_model": Blip2VisionModel, "instructblip_vision_model": InstructBlipVisionModel}
    if config.model_type in blip:
        return blip[config.model_type]
    raise ValueError(f"hf_vision: transformers has no model for config type {type(config).__name__}")


def _first_conv(tower: nn.Module) -> tuple[str, nn.Conv2d]:
    return next((name, m) for name, m in tower.named_modules() if isinstance(m, nn.Conv2d))


def _local_dir(source: str) -> Path | None:
    """A path-like `pretrained` must be a local directory with config.json; anything else is a hub name."""
    path = Path(source).expanduser()
    if path.is_dir() or source.startswith(("/", ".", "~")):
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"pretrained: {path / 'config.json'} not found; give a directory written by save_pretrained")
        return path
    return None


class HFVisionEncoder(Encoder):
    def __init__(self, config: HFVisionConfig) -> None:
        super().__init__()
        self.config = config
        self.load_report = LoadReport()
        self.stem_adapted: str | None = None
        source = config.pretrained
        directory = None
        if source is not None and source.endswith(WEIGHT_SUFFIXES):
            self.tower = self._from_file(Path(source))
        elif source is not None:
            directory = _local_dir(source)
            self.tower = self._from_pretrained(source)
        else:
            self.tower = _tower_class(self._config_from_dict())(self._config_from_dict())

        if not config.final_norm:
            if not isinstance(getattr(self.tower, "post_layernorm", None), nn.LayerNorm):
                raise ValueError(f"final_norm: false, but {type(self.tower).__name__} has no post_layernorm")
            self.tower.post_layernorm = nn.Identity()
        tcfg = self.tower.config
        self.patch_size = tcfg.patch_size if isinstance(tcfg.patch_size, int) else tcfg.patch_size[0]
        if config.image_size % self.patch_size:
            raise ValueError(f"image_size: {config.image_size} is not a multiple of the patch size {self.patch_size}")
        self.grid = config.image_size // self.patch_size
        # CLIP/SigLIP keep their position table for the trained size unless told to interpolate;
        # DINOv2 always interpolates (and takes no such argument).
        self._interpolate = config.image_size != tcfg.image_size and "interpolate_pos_encoding" in (
            inspect.signature(self.tower.forward).parameters)
        num_layers = tcfg.num_hidden_layers
        self._map_indices = normalise_layers(
            config.map_layers if config.map_layers is not None else [-1], num_layers,
            what=f"{type(self.tower).__name__} ({num_layers} layers)")
        self.out_dim = tcfg.hidden_size
        self.map_channels = [tcfg.hidden_size] * len(self._map_indices)

        unused = UNUSED.get(type(self.tower).__name__, ())
        if config.freeze:
            self.tower.requires_grad_(False)
        elif config.trainable_blocks is not None:
            layers = next(n for n, m in self.tower.named_modules()
                          if isinstance(m, nn.ModuleList) and len(m) == num_layers)
            train_last_blocks(self.tower, [f"{layers}.{i}" for i in range(num_layers)], config.trainable_blocks,
                              what=type(self.tower).__name__)
        for name, param in self.tower.named_parameters():
            if name.startswith(unused):
                param.requires_grad_(False)
        frozen = any(not p.requires_grad for p in self.tower.parameters())
        # Frozen weights that the recipe can fetch again need not be saved with the model.
        self.weights_from_source = source is not None and frozen

        mean, std, resample = self._preprocessing(directory)
        self.image_size = config.image_size
        self.interpolation = config.interpolation
        if resample is not None and resample != config.interpolation:
            log.warning("hf_vision %s was trained on %s-resized images; the recipe says interpolation: %s",
                        source, resample, config.interpolation)
        self.in_chans = config.in_chans
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def _config_from_dict(self):
        raw = dict(self.config.config or {})
        if raw.setdefault("num_channels", self.config.in_chans) != self.config.in_chans:
            raise ValueError(f"config.num_channels: {raw['num_channels']} but in_chans is {self.config.in_chans}")
        return AutoConfig.for_model(**raw)

    def _from_file(self, path: Path) -> PreTrainedModel:
        """Weights file into the architecture of `config`, checked key by key."""
        cfg = self._config_from_dict()
        tower = _tower_class(cfg)(cfg)
        state = read_state_dict(path)
        self._fit(tower, state, str(path))
        return tower

    def _from_pretrained(self, source: str) -> PreTrainedModel:
        cfg = AutoConfig.from_pretrained(source)
        # A full CLIP/SigLIP directory (text + vision): load its vision tower; the text tower's
        # keys are then expected left-overs.
        composite = hasattr(cfg, "vision_config")
        cls = _tower_class(cfg.vision_config if composite else cfg)
        if torch.empty(0).device.type == "meta":  # assembling shapes only (recipe check): no weights to read
            tower_cfg = cfg.vision_config if composite else cfg
            tower_cfg.num_channels = self.config.in_chans
            return cls(tower_cfg)
        tower, info = cls.from_pretrained(source, output_loading_info=True, ignore_mismatched_sizes=True,
                                          dtype=torch.float32)
        report = LoadReport(
            missing=sorted(info["missing_keys"]),
            unexpected=sorted(k for k in info["unexpected_keys"] if not composite or k.startswith("vision_model.")),
            mismatched=sorted(f"{k}: {tuple(a)} vs {tuple(b)}" for k, a, b in info["mismatched_keys"]),
        )
        what = cls.__name__
        if report and self.config.strict_load:
            raise ValueError(f"{source} does not fit {what}: {report} (set strict_load: false to load what fits)")
        if report:
            log.warning("%s loaded partly into %s: %s", source, what, report)
        self.load_report = report
        # BLIP-2's tower has no num_channels: its patch embedding reads RGB.
        if getattr(tower.config, "num_channels", 3) != self.config.in_chans:
            # Multispectral input: rebuild with in_chans bands and refit the loaded weights, stem adapted.
            cfg = tower.config
            state = tower.state_dict()
            cfg.num_channels = self.config.in_chans
            tower = cls(cfg)
            self._fit(tower, state, source)
        return tower

    def _fit(self, tower: PreTrainedModel, state: dict[str, torch.Tensor], source: str) -> None:
        stem, _ = _first_conv(tower)
        self.stem_adapted = adapt_stem(state, f"{stem}.weight", self.config.in_chans, self.config.stem_adaptation)
        self.load_report = fit_state_dict(tower, state, source=source, what=type(tower).__name__,
                                          strict=self.config.strict_load)

    def _preprocessing(self, directory: Path | None) -> tuple[list[float], list[float], str | None]:
        """mean/std: the recipe's, else the tower's preprocessor_config.json, else ImageNet's."""
        processor = directory / "preprocessor_config.json" if directory is not None else None
        values = json.loads(processor.read_text()) if processor is not None and processor.is_file() else {}
        resample = PIL_RESAMPLE.get(values.get("resample"))
        mean = self.config.mean or values.get("image_mean") or IMAGENET_MEAN
        std = self.config.std or values.get("image_std") or IMAGENET_STD
        for key, value in (("mean", mean), ("std", std)):
            if len(value) != self.config.in_chans:
                where = processor if getattr(self.config, key) is None else "the recipe"
                raise ValueError(f"{key}: {where} gives {len(value)} values but in_chans is "
                                 f"{self.config.in_chans}; set {key} with one value per band")
        return mean, std, resample

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        self.check_input(images)
        x = (images - self.mean) / self.std
        kwargs = {"interpolate_pos_encoding": True} if self._interpolate else {}
        out = self.tower(pixel_values=x, output_hidden_states=True, **kwargs)
        last = out.last_hidden_state
        prefix = last.shape[1] - self.grid * self.grid
        tokens = last if self.config.keep_prefix_tokens else last[:, prefix:]
        maps = [
            out.hidden_states[i + 1][:, prefix:].transpose(1, 2).unflatten(2, (self.grid, self.grid))
            for i in self._map_indices
        ]
        return tokens, maps
