"""On-disk cache of a frozen encoder's outputs: computed once per image, reused by every epoch and worker.

Layout: `<root>/<encoder fingerprint>/<image content hash>.safetensors` holding `tokens` (N, D) and
`map_<i>` (C_i, H_i, W_i) of one image. The fingerprint covers the encoder's config, its weights, the
image size and the resampling filter, so a changed encoder never reads stale features. Writes go to a
per-process temporary file renamed into place: two workers that compute the same image race harmlessly.
The cache is exact only because training applies no augmentation: the encoder sees the same pixels
every epoch. Cached features reach the model as `Batch.features`, an input like the images.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from rsforge.core.atomic import atomic_path
from rsforge.core.interfaces import VisualFeatures
from rsforge.datasets.images import load_image


def file_hash(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def encoder_fingerprint(encoder: nn.Module, config: dict, image_size: int, interpolation: str) -> str:
    digest = hashlib.sha256(json.dumps([config, image_size, interpolation], sort_keys=True).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]


class FeatureCache:
    """Encoder outputs per image file, for a model whose encoder has no trainable parameter."""

    def __init__(self, root: str | Path, model: nn.Module) -> None:
        encoder = getattr(model, "encoder", None)
        if encoder is None:
            raise ValueError("train.feature_cache: the model has no encoder (its decoder reads the images)")
        trainable = sum(p.numel() for p in encoder.parameters() if p.requires_grad)
        if trainable:
            raise ValueError(
                f"train.feature_cache: encoder '{model.recipe.encoder.name}' has {trainable} trainable parameters; "
                "cached features would go stale as it trains (freeze it, e.g. `freeze: true`, or turn the cache off)"
            )
        self.encoder = encoder
        self.image_size = model.image_size
        self.interpolation = model.recipe.encoder.interpolation  # what the data loader resizes with
        fingerprint = encoder_fingerprint(encoder, model.recipe.encoder.model_dump(mode="json"), self.image_size,
                                          self.interpolation)
        self.directory = Path(root) / fingerprint
        self.directory.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0
        self._keys: dict[str, str] = {}  # path -> content hash: each file is read once per process

    def _entry(self, path: str) -> Path:
        if path not in self._keys:
            self._keys[path] = file_hash(path)
        return self.directory / f"{self._keys[path]}.safetensors"

    @torch.no_grad()
    def _compute(self, path: str, entry: Path) -> dict[str, torch.Tensor]:
        image = load_image(path, self.image_size, interpolation=self.interpolation)
        device = next(self.encoder.parameters(), torch.empty(0)).device
        was_training = self.encoder.training
        self.encoder.eval()  # deterministic features: no dropout in what every later epoch reuses
        tokens, maps = self.encoder(image[None].to(device))
        self.encoder.train(was_training)
        tensors = {"tokens": tokens[0].float().cpu().contiguous()}
        tensors.update({f"map_{i}": m[0].float().cpu().contiguous() for i, m in enumerate(maps)})
        with atomic_path(entry) as tmp:
            save_file(tensors, str(tmp))
        return tensors

    def features(self, image_paths: Sequence[Sequence[str]]) -> VisualFeatures:
        """For B samples of T images each: the encoder's features (B, T, ...), as `RSForgeModel.encode`
        would compute them; a `Batch` carries them so the model skips its encoder."""
        entries = []
        for path in (str(p) for paths in image_paths for p in paths):
            entry = self._entry(path)
            if entry.is_file():
                self.hits += 1
                entries.append(load_file(str(entry)))
            else:
                self.misses += 1
                entries.append(self._compute(path, entry))
        shape = (len(image_paths), len(image_paths[0]))
        tokens = torch.stack([e["tokens"] for e in entries]).unflatten(0, shape)
        num_maps = sum(1 for key in entries[0] if key.startswith("map_"))
        maps = [torch.stack([e[f"map_{i}"] for e in entries]).unflatten(0, shape) for i in range(num_maps)]
        return VisualFeatures(tokens, maps)
