"""Assembler: recipe -> built parts, checking that neighbouring parts fit, and that the parts can do
what the recipe asks of them, before any weight exists. `RSForgeModel.from_recipe` wires the parts."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from rsforge.core.configs import PartConfig
from rsforge.core.errors import AssemblyError, RecipeError
from rsforge.core.interfaces import LogitRegulariser, Reward
from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import Recipe
from rsforge.core.registry import Registry


def _build(plugins: PluginManager, kind: str, config: PartConfig, path: str):
    spec = plugins.registry.get(kind, config.name, path=f"{path}.name")
    factory = spec.load_factory()
    try:
        return factory(config)
    except (AssemblyError, RecipeError, FileNotFoundError):
        raise
    # What a part's library raises for a bad setting (an unknown model name, a keyword of the wrong type, an
    # unreadable weights file) names no part; the recipe path does.
    except (TypeError, ValueError, KeyError, RuntimeError, OSError) as exc:
        raise RecipeError(f"{_label(path, config)}: {type(exc).__name__}: {exc}") from exc


def _label(path: str, config: PartConfig) -> str:
    return f"{path} ({config.name})"


@dataclass
class Parts:
    """The built parts of a recipe; `recipe` has the widths the assembler filled in."""

    recipe: Recipe
    encoder: nn.Module | None
    bridges: list[nn.Module]
    decoder: nn.Module | None
    heads: list[nn.Module]


def _check_scst_rewards(recipe: Recipe, registry: Registry) -> None:
    """An scst stage learns from the difference between a sample's reward and its baseline's, which are
    captions of the same input: a reward that does not read the caption (`Reward.reads_caption`) adds
    nothing to it, and a recipe whose rewards are all logit regularisers has no signal at all."""
    text_rewards = 0
    for i, config in enumerate(recipe.rewards):
        factory = registry.get("reward", config.name, path=f"rewards[{i}].name").load_factory()
        # The abilities are class attributes: read them without building the reward (no model loads).
        if isinstance(factory, type) and issubclass(factory, LogitRegulariser):
            continue
        text_rewards += 1
        if isinstance(factory, type) and issubclass(factory, Reward) and not factory.reads_caption:
            raise RecipeError(f"rewards[{i}] ({config.name}): its score does not depend on the caption, so an scst "
                              "stage's sample and baseline get the same score and it adds nothing to the "
                              "advantage; drop it from a recipe with an scst stage")
    if not text_rewards:
        raise RecipeError("rewards: an scst stage needs a text reward that scores the caption; the recipe lists "
                          "only logit regularisers")


def check_abilities(recipe: Recipe, decoder, heads: list, registry: Registry) -> None:
    """Refuse training stages the parts cannot run, naming the part, before any step is taken."""
    kinds = {stage.kind for stage in recipe.train.stages}
    if "scst" in kinds:
        if decoder is None:
            raise AssemblyError("train.stages: an scst stage samples answers, but the recipe has no decoder")
        if not decoder.scores_continuations:
            raise AssemblyError(f"train.stages: an scst stage needs continuation log-probs, which decoder "
                                f"({recipe.decoder.name}) does not provide")
        if not recipe.rewards:
            raise RecipeError("rewards: an scst stage needs at least one reward")
        _check_scst_rewards(recipe, registry)
    if "mask" in kinds and not any(h.predicts_mask for h in heads):
        raise AssemblyError("train.stages: a mask stage needs a mask head in `heads`")


def assemble_parts(recipe: Recipe, plugins: PluginManager, *, device: str | torch.device | None = None) -> Parts:
    """Build every part of `recipe`; `device="meta"` builds shapes without weights."""
    place = torch.device(device) if device is not None else contextlib.nullcontext()
    with place:
        decoder = _build(plugins, "decoder", recipe.decoder, "decoder") if recipe.decoder else None
        if decoder is not None and decoder.reads_images:
            # A VLM with its own vision tower: no encoder, bridges or heads would ever run.
            extra = [k for k in ("encoder", "bridges", "heads") if getattr(recipe, k)]
            if extra:
                raise AssemblyError(f"decoder ({recipe.decoder.name}) reads the images itself; drop {', '.join(extra)}")
            check_abilities(recipe, decoder, [], plugins.registry)
            return Parts(recipe, None, [], decoder, [])
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

    check_abilities(recipe, decoder, heads, plugins.registry)
    resolved = recipe.model_copy(update={"bridges": bridge_configs, "heads": head_configs})
    return Parts(resolved, encoder, bridges, decoder, heads)
