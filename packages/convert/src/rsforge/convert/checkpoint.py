"""Reading a published checkpoint, checking it key by key against the class that defines it, and writing
Hugging Face model folders (sharded safetensors) from parts of it.

Tensors are read one at a time where the format allows (safetensors), so converting a 7B checkpoint
holds one copy of the weights at most, never two."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from rsforge.core.errors import weights_misfit

SHARD_BYTES = 4 * 1024**3  # Hugging Face's default shard size for save_pretrained


class ConversionError(ValueError):
    """A checkpoint that is not what its format says: names the file, the key and both shapes."""


class Checkpoint:
    """The tensors of a checkpoint: one safetensors file, a folder of them (sharded, with or without an
    index), or a PyTorch pickle (`.pth`/`.bin`; LAVIS keeps its weights under `model`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._where: dict[str, Path] = {}
        self._loaded: dict[str, torch.Tensor] | None = None
        if self.path.is_dir():
            files = sorted(self.path.glob("*.safetensors"))
            if not files:
                raise ConversionError(f"{self.path}: no *.safetensors weights in this folder")
            for file in files:
                with safe_open(str(file), framework="pt") as f:
                    self._where.update(dict.fromkeys(f.keys(), file))
        elif self.path.suffix == ".safetensors":
            with safe_open(str(self.path), framework="pt") as f:
                self._where = dict.fromkeys(f.keys(), self.path)
        elif self.path.suffix in (".pth", ".pt", ".bin"):
            self._loaded = _load_pickle(self.path)
        elif not self.path.exists():
            raise ConversionError(f"{self.path}: not found")
        else:
            raise ConversionError(f"{self.path}: expected a folder of safetensors, a .safetensors or a .pth file")

    def keys(self) -> list[str]:
        return list(self._loaded if self._loaded is not None else self._where)

    def file_of(self, key: str) -> Path:
        return self._where.get(key, self.path)

    def get(self, key: str) -> torch.Tensor:
        if self._loaded is not None:
            return self._loaded[key]
        with safe_open(str(self._where[key]), framework="pt") as f:
            return f.get_tensor(key)

    def shape(self, key: str) -> tuple[int, ...]:
        if self._loaded is not None:
            return tuple(self._loaded[key].shape)
        with safe_open(str(self._where[key]), framework="pt") as f:
            return tuple(f.get_slice(key).get_shape())


def _load_pickle(path: Path) -> dict[str, torch.Tensor]:
    try:
        # weights_only: a checkpoint may carry tensors and plain containers, never code; mmap keeps it on disk.
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:
        raise ConversionError(f"{path}: torch.load(weights_only=True) refuses it: corrupt, or it holds more "
                              "than tensors") from None
    except (OSError, RuntimeError, EOFError) as exc:
        raise ConversionError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # LAVIS: {"model": state_dict, "optimizer": ..., "epoch": ...}
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{path}: expected a state dict (or {{'model': state dict}}) of tensors")
    return state


def expected_state(module: nn.Module) -> tuple[dict[str, tuple[int, ...]], list[set[str]]]:
    """Shapes of every key of `module`'s state dict (built on the meta device: no memory), and the groups
    of keys that name one tied tensor (a file stores one of each group)."""
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    groups: dict[int, set[str]] = {}
    for name, param in module.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), set()).add(name)
    return shapes, [g for g in groups.values() if len(g) > 1]


def check_keys(path: Path, found: dict[str, str], shape_of: Callable[[str], tuple[int, ...]],
               shapes: dict[str, tuple[int, ...]], tied: list[set[str]], *, what: str) -> None:
    """`found` maps each expected name to the file's key it comes from; every expected key must be there
    with its shape and nothing else: else one error naming the file, the keys and both shapes."""
    missing = [k for k in shapes if k not in found and not any(k in g and g & found.keys() for g in tied)]
    unexpected = [found[k] for k in found if k not in shapes]
    mismatched = [f"{found[k]} has shape {shape_of(found[k])} in the file, {what} has {shapes[k]}"
                  for k in found if k in shapes and shape_of(found[k]) != shapes[k]]
    misfit = weights_misfit(missing, unexpected, mismatched, limit=8)
    if misfit:
        raise ConversionError(f"{path} does not fit {what}: {misfit}")


def write_weights(directory: Path, tensors: Iterable[tuple[str, Callable[[], torch.Tensor]]],
                  name: str = "model", *, shard: bool = True) -> None:
    """Write `name.safetensors`, or (`shard`) shards of at most SHARD_BYTES with `name.safetensors.index.json`
    (the layout `from_pretrained` reads). Tensors are fetched lazily and each shard is written once full.
    A bridge's weights (`shard=False`) stay one file, which its recipe names."""
    current: dict[str, torch.Tensor] = {}
    size, files, weight_map = 0, [], {}

    def flush() -> None:
        files.append(directory / f".{name}-shard{len(files)}.safetensors")
        save_file(current, str(files[-1]), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(current, len(files) - 1))
        current.clear()

    for key, fetch in tensors:
        tensor = fetch().contiguous()
        nbytes = tensor.numel() * tensor.element_size()
        if shard and current and size + nbytes > SHARD_BYTES:
            flush()
            size = 0
        current[key] = tensor
        size += nbytes
    flush()
    if len(files) == 1:
        files[0].rename(directory / f"{name}.safetensors")
        return
    names = [f"{name}-{i:05d}-of-{len(files):05d}.safetensors" for i in range(1, len(files) + 1)]
    for file, final in zip(files, names, strict=True):
        file.rename(directory / final)
    index = {"metadata": {}, "weight_map": {k: names[i] for k, i in weight_map.items()}}
    (directory / f"{name}.safetensors.index.json").write_text(json.dumps(index, indent=2))
