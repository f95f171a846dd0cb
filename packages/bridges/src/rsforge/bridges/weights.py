"""Reading a released part's tensors from safetensors (a file or a folder of shards) under this package's
key names: only the tensors a bridge keeps are read, since a full checkpoint holding them is many GB."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch


def read_part(path: str | Path, own: dict[str, torch.Tensor], rename: Callable[[str], str | None], *,
              what: str) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """(tensors under the part's names, unexpected file keys, mis-shaped keys with both shapes) of the file
    keys that `rename` maps to a name (None: outside the part)."""
    from safetensors import safe_open

    path = Path(path)
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise FileNotFoundError(f"{what} weights: no safetensors file at {path}")
    loaded: dict[str, torch.Tensor] = {}
    unexpected, mismatched = [], []
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():  # safe_open has keys(), no __iter__
                name = rename(key)
                if name is None:
                    continue
                if name not in own:
                    unexpected.append(key)
                    continue
                tensor = f.get_tensor(key)
                if tensor.shape != own[name].shape:
                    mismatched.append(f"{key}: {tuple(tensor.shape)} in file, {tuple(own[name].shape)} here")
                loaded[name] = tensor
    return loaded, unexpected, mismatched
