"""The pure-torch training steps: parameter-group learning rates, gradient accumulation,
autocast precision, RNG state round trips. No Ray, no plugin package: a small stand-in model."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch
from torch import nn

from rsforge.core.batch import Batch, Losses
from rsforge.core.recipe import TrainConfig
from rsforge.train.steps import (
    build_optimizer,
    build_scheduler,
    check_precision,
    make_grad_scaler,
    rng_state,
    set_rng_state,
    train_step,
)


class Regressor(nn.Module):
    """Parts named as an RSForgeModel's are (encoder, bridges[i], decoder), with a mean-reduced loss."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Linear(4, 8)
        self.bridges = nn.ModuleList([nn.Linear(8, 8), nn.Linear(8, 8)])
        self.decoder = nn.Linear(8, 1)

    def parameter_counts(self):
        rows = [("encoder", self.encoder), ("bridges[0]", self.bridges[0]), ("bridges[1]", self.bridges[1]),
                ("decoder", self.decoder)]
        return [(path, "x", sum(p.numel() for p in m.parameters()), 0) for path, m in rows]

    def forward(self, batch: Batch) -> Losses:
        h = torch.relu(self.encoder(batch.images))
        for bridge in self.bridges:
            h = torch.relu(bridge(h))
        loss = ((self.decoder(h).squeeze(-1) - batch.labels) ** 2).mean()
        return Losses(total=loss, heads={"mse": loss})


def _data(n=8, seed=1, rows=slice(None)):
    """Inputs as `images` (n, 4), regression targets as `labels` (n,)."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 4, generator=g), torch.randn(n, generator=g)
    return Batch(images=x[rows], conversations=[], labels=y[rows])


def _lrs(optimizer):
    return sorted({g["lr"] for g in optimizer.param_groups})


def test_lr_multipliers_make_groups_with_the_longest_prefix_winning():
    model = Regressor()
    config = TrainConfig(lr=1e-2, lr_multipliers={"encoder": 0.1, "bridges": 0.5, "bridges[1]": 2.0})
    optimizer = build_optimizer(model, config)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert lr_of[id(model.encoder.weight)] == pytest.approx(1e-3)
    assert lr_of[id(model.bridges[0].weight)] == pytest.approx(5e-3)
    assert lr_of[id(model.bridges[1].weight)] == pytest.approx(2e-2)
    assert lr_of[id(model.decoder.weight)] == pytest.approx(1e-2)
    # Biases decay-free, weights with decay, in every lr group.
    decay_of = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert decay_of[id(model.encoder.bias)] == 0.0 and decay_of[id(model.encoder.weight)] == config.weight_decay
    # The schedule scales every group alike: the ratios survive warmup and decay.
    scheduler = build_scheduler(optimizer, config.model_copy(update={"warmup_steps": 2}), total_steps=10)
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    lrs = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert lrs[id(model.encoder.weight)] / lrs[id(model.decoder.weight)] == pytest.approx(0.1)


def test_unknown_lr_multiplier_key_names_the_known_parts():
    with pytest.raises(ValueError, match=r"train\.lr_multipliers\.heads\[0\]: not a part.*bridges\[1\].*encoder"):
        build_optimizer(Regressor(), TrainConfig(lr_multipliers={"heads[0]": 0.1}))
    with pytest.raises(ValueError, match=r"train\.lr_multipliers\.encoders"):
        build_optimizer(Regressor(), TrainConfig(lr_multipliers={"encoders": 0.1}))
    with pytest.raises(ValueError, match=r"train\.lr_multipliers\.decoder: must be >= 0"):
        build_optimizer(Regressor(), TrainConfig(lr_multipliers={"decoder": -1.0}))


def test_frozen_parts_are_left_out_and_a_fully_frozen_model_is_an_error():
    model = Regressor()
    model.encoder.requires_grad_(False)
    optimizer = build_optimizer(model, TrainConfig())
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert id(model.encoder.weight) not in held and id(model.decoder.weight) in held
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(model, TrainConfig())


def _one_step(batches):
    config = TrainConfig(lr=1e-2, grad_clip=None)
    model = Regressor()
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, total_steps=4)
    losses = train_step(model, batches, optimizer, scheduler, grad_clip=config.grad_clip)
    return model, losses


def test_gradient_accumulation_equals_one_big_batch():
    data = _data(8)
    halves = [_data(8, rows=slice(None, 4)), _data(8, rows=slice(4, None))]
    big, big_losses = _one_step(data)
    accumulated, acc_losses = _one_step(halves)
    assert acc_losses["loss"] == pytest.approx(big_losses["loss"], rel=1e-5)
    for (name, p), q in zip(big.named_parameters(), accumulated.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
    # ... and differs from a step on one half alone (the test can tell the two apart).
    half, _ = _one_step(halves[0])
    assert not torch.allclose(half.decoder.weight, big.decoder.weight)


def test_bf16_autocast_runs_on_cpu_close_to_fp32():
    data = _data(8)
    model = Regressor()
    config = TrainConfig(lr=1e-2, precision="bf16")
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, total_steps=4)
    check_precision("bf16", torch.device("cpu"))
    bf16 = train_step(model, data, optimizer, scheduler, grad_clip=1.0, precision="bf16")
    _, fp32 = _one_step(data)
    assert bf16["loss"] == pytest.approx(fp32["loss"], rel=5e-2)
    assert model.decoder.weight.dtype == torch.float32  # autocast, not a cast of the weights
    assert make_grad_scaler("bf16", torch.device("cpu")) is None


def test_fp16_is_refused_on_cpu_with_the_field_named():
    with pytest.raises(ValueError, match=r"train\.precision: fp16 needs a CUDA device"):
        check_precision("fp16", torch.device("cpu"))
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp8")


def test_rng_state_round_trips_through_a_weights_only_checkpoint():
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    buffer = io.BytesIO()
    torch.save(rng_state(), buffer)
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    buffer.seek(0)
    set_rng_state(torch.load(buffer, weights_only=True))
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected
