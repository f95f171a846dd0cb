"""Contract test, timm style: every registered part is built from its tiny `example` config, run
forward (and backward where it trains), checked for shapes and dtypes, and round-tripped through
safetensors. A part registered without an example fails here."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_model, save_model

from rsforge.core.interfaces import (
    Bridge,
    Decoder,
    Encoder,
    GenerationOptions,
    Head,
    LogitRegulariser,
    Reward,
    VisualFeatures,
)
from rsforge.core.plugins import PluginManager
from rsforge.core.sample import Turn

REGISTRY = PluginManager().registry
PARTS = [(kind, name) for kind in ("encoder", "bridge", "decoder", "head", "reward") for name in REGISTRY.names(kind)]


def _build(kind: str, name: str):
    spec = REGISTRY.parts[kind][name]
    assert spec.example is not None, f"{kind} '{name}' ({spec.distribution}) registers no tiny example config"
    config = spec.config.model_validate({"name": name, **spec.example})
    return spec.load_factory(), config


INTERFACES = {"encoder": (Encoder,), "bridge": (Bridge,), "decoder": (Decoder,), "head": (Head,),
              "reward": (Reward, LogitRegulariser)}


def _run(kind: str, part, config):
    """Forward the part on tiny inputs; return (outputs to compare, loss to backprop or None)."""
    assert isinstance(part, INTERFACES[kind]), f"a {kind} implements {INTERFACES[kind]} (rsforge.core.interfaces)"
    g = torch.Generator().manual_seed(0)
    if kind == "encoder":
        images = torch.rand(2, 3, config.image_size, config.image_size, generator=g)
        tokens, maps = part(images)
        assert tokens.dim() == 3 and tokens.shape[0] == 2 and tokens.shape[-1] == part.out_dim
        assert [m.shape[1] for m in maps] == part.map_channels and all(m.shape[0] == 2 for m in maps)
        return [tokens, *maps], tokens.square().mean()
    if kind == "bridge":
        # Tokens on a 4x4 patch grid; maps of both dates with the channels the config names (bridges that
        # read or align maps declare `map_channels`); an instruction per sample for bridges that read one.
        t = 2 if part.bitemporal else 1
        maps = [torch.randn(2, 2, c, 4, 4, generator=g) for c in getattr(config, "map_channels", None) or []]
        features = VisualFeatures(torch.randn(2, t, 16, part.in_dim, generator=g), maps)
        out = part(features, ["what changed?", "are there new buildings?"])
        assert out.tokens.shape[0] == 2 and out.tokens.shape[1] == (1 if part.bitemporal else t)
        assert out.tokens.shape[-1] == part.out_dim and out.tokens.dtype == torch.float32
        assert [m.shape for m in out.maps] == [m.shape for m in maps]  # dates stay apart in the maps
        loss = out.tokens.square().mean() + sum(m.square().mean() for m in out.maps if part.aligns_maps)
        return [out.tokens, *out.maps], loss
    if kind == "decoder":
        if getattr(part, "reads_images", False):  # a VLM with its own vision tower reads (B, T, 3, S, S) images
            visual = torch.rand(2, part.num_images, 3, part.image_size, part.image_size, generator=g)
        else:
            visual = torch.randn(2, 3, part.hidden_size, generator=g)
        convs = [[Turn("user", "a"), Turn("assistant", "new building")], [Turn("user", "building")]]
        loss = part(visual, [convs[0], convs[0]])
        assert loss.dim() == 0 and torch.isfinite(loss)
        out = part.generate(visual, [convs[1], convs[1]], GenerationOptions(max_new_tokens=4))
        assert len(out.texts) == 2 and all(isinstance(t, str) for t in out.texts)
        assert out.token_ids.shape == out.mask.shape == out.logprobs.shape and out.token_ids.shape[0] == 2
        assert set(out.finish_reasons) <= {"stop", "length"} and len(out.finish_reasons) == 2
        return [loss.detach()], loss
    if kind == "head":
        maps = [torch.randn(2, 2, c, 4, 4, generator=g) for c in config.in_channels or []]
        # Heads reading bridged tokens get the fused date (T=1) at their in_dim; others the encoder's pair.
        t, dim = (1, config.in_dim) if part.reads_bridged_tokens else (2, getattr(config, "in_dim", 8))
        features = VisualFeatures(torch.randn(2, t, 16, dim, generator=g), maps)
        logits = part(features, 16, ["new buildings", "cleared vegetation"])
        if not part.predicts_mask:
            assert logits.shape == (2, config.num_classes) and logits.dtype == torch.float32
            return [logits], part.loss(logits, torch.randint(0, config.num_classes, (2,), generator=g))
        assert logits.shape == (2, config.num_classes, 16, 16) and logits.dtype == torch.float32
        assert part(features, 16).shape == logits.shape  # instructions are optional
        loss = part.loss(logits, (torch.rand(2, 16, 16, generator=g) > 0.7).float())
        return [logits], loss
    if isinstance(part, LogitRegulariser):  # (N, L, V) logits, (N, L) mask -> (N,)
        logits = torch.randn(2, 5, 11, generator=g, requires_grad=True)
        values = part(logits, torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool))
        assert values.shape == (2,) and values.dtype == torch.float32 and torch.isfinite(values).all()
        values.sum().backward()
        assert logits.grad is not None and logits.grad[0, 3:].abs().sum() == 0  # masked after EOS
        return [values.detach()], None
    masks = (torch.rand(2, 8, 8, generator=g) > 0.5).float()
    extras = {"masks": masks, "pred_masks": torch.randn(2, 8, 8, generator=g), "mask_valid": torch.ones(2).bool()}
    scores = part(["a building was built", "no change"], [["a building was built"], ["there is no change"]], extras)
    assert scores.shape == (2,) and scores.dtype == torch.float32 and torch.isfinite(scores).all()
    return [scores], None


@pytest.mark.parametrize(("kind", "name"), PARTS, ids=[f"{k}-{n}" for k, n in PARTS])
def test_part_contract(kind, name, tmp_path):
    factory, config = _build(kind, name)
    torch.manual_seed(0)
    part = factory(config)
    if not isinstance(part, torch.nn.Module):
        _run(kind, part, config)
        return
    part.train()
    _, loss = _run(kind, part, config)
    if loss is not None:
        loss.backward()
        trainable = [p for p in part.parameters() if p.requires_grad]
        assert trainable and any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)
    part.eval()
    outputs, _ = _run(kind, part, config)
    save_model(part, str(tmp_path / "part.safetensors"))
    torch.manual_seed(1)
    again = factory(config).eval()
    load_model(again, str(tmp_path / "part.safetensors"))
    for a, b in zip(outputs, _run(kind, again, config)[0], strict=True):
        assert torch.equal(a, b)


def test_one_part_of_every_kind_is_registered():
    for kind in ("encoder", "bridge", "decoder", "head", "reward", "dataset"):
        assert REGISTRY.names(kind), f"no {kind} registered"
