"""Assembler: recipe -> RSForgeModel, checking that neighbouring parts fit before any weight exists."""

from __future__ import annotations

import contextlib

import torch

from rsforge.core.config import PartConfig
from rsforge.core.errors import AssemblyError
from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import Recipe


def _build(plugins: PluginManager, kind: str, config: PartConfig, path: str):
    spec = plugins.registry.get(kind, config.name, path=f"{path}.name")
    return spec.load_factory()(config)


def _label(path: str, config: PartConfig) -> str:
    return f"{path} ({config.name})"


def assemble(recipe: Recipe, plugins: PluginManager, *, device: str | torch.device | None = None):
    """Build every part of `recipe` and wire them; `device="meta"` builds shapes without weights."""
    from rsforge.core.model import RSForgeModel

    place = torch.device(device) if device is not None else contextlib.nullcontext()
    with place:
        decoder = _build(plugins, "decoder", recipe.decoder, "decoder") if recipe.decoder else None
        if decoder is not None and decoder.reads_images:
            # A VLM with its own vision tower: no encoder, bridges or heads would ever run.
            extra = [k for k in ("encoder", "bridges", "heads") if getattr(recipe, k)]
            if extra:
                raise AssemblyError(f"decoder ({recipe.decoder.name}) reads the images itself; drop {', '.join(extra)}")
            return RSForgeModel(recipe, encoder=None, bridges=[], decoder=decoder, heads=[])
        if recipe.encoder is None:
            raise AssemblyError("encoder: missing; only a decoder that reads images itself works without one")
        encoder = _build(plugins, "encoder", recipe.encoder, "encoder")

        dim, upstream, dates = encoder.out_dim, _label("encoder", recipe.encoder), None
        bridges, bridge_configs = [], []
        for i, config in enumerate(recipe.bridges):
            path = _label(f"bridges[{i}]", config)
            update: dict = {}
            if config.in_dim is None:
                update["in_dim"] = dim
            elif config.in_dim != dim:
                raise AssemblyError(f"{path} expects in_dim={config.in_dim}, but {upstream} outputs {dim}")
            if config.out_dim is None and i == len(recipe.bridges) - 1 and decoder is not None:
                update["out_dim"] = decoder.hidden_size
            config = config.model_copy(update=update)
            bridge = _build(plugins, "bridge", config, f"bridges[{i}]")
            if bridge.bitemporal:
                if dates is not None:
                    raise AssemblyError(f"{path} fuses two dates, but {dates} already fused them into one")
                dates = path
            bridges.append(bridge)
            bridge_configs.append(config)
            dim, upstream = bridge.out_dim, path
        if decoder is not None and dim != decoder.hidden_size:
            raise AssemblyError(
                f"{upstream} outputs {dim}, but decoder ({recipe.decoder.name}) has hidden size "
                f"{decoder.hidden_size}; add a projector bridge or set its out_dim"
            )

        heads, head_configs = [], []
        for i, config in enumerate(recipe.heads):
            if config.in_channels is None:
                config = config.model_copy(update={"in_channels": list(encoder.map_channels)})
            elif list(config.in_channels) != list(encoder.map_channels):
                raise AssemblyError(
                    f"{_label(f'heads[{i}]', config)} expects in_channels={config.in_channels}, but "
                    f"encoder ({recipe.encoder.name}) gives maps with channels {encoder.map_channels}"
                )
            if "in_dim" in type(config).model_fields:
                width, source = ((dim, upstream) if config.reads_bridged_tokens()
                                 else (encoder.out_dim, _label("encoder", recipe.encoder)))
                if config.in_dim is None:
                    config = config.model_copy(update={"in_dim": width})
                elif config.in_dim != width:
                    raise AssemblyError(f"{_label(f'heads[{i}]', config)} expects in_dim={config.in_dim}, "
                                        f"but {source} outputs {width}")
            heads.append(_build(plugins, "head", config, f"heads[{i}]"))
            head_configs.append(config)

    resolved = recipe.model_copy(update={"bridges": bridge_configs, "heads": head_configs})
    return RSForgeModel(resolved, encoder=encoder, bridges=bridges, decoder=decoder, heads=heads)
