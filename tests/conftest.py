"""Fixtures shared by the cross-package tests: one Ray instance per session, one tiny saved model."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import yaml

from rsforge.core.plugins import PluginManager

ROOT = Path(__file__).resolve().parents[1]
TINY_CORPUS = ["describe the changes between the two images", "a new building was built in the top left",
               "there is no change", "some trees were cut down"]


def free_port() -> int:
    """A loopback port free now (for a server the test starts next)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def plugins() -> PluginManager:
    return PluginManager()


@pytest.fixture(scope="session")
def ray_session():
    import ray

    # More logical CPUs than cores: a 2-worker trainer and a Serve replica may coexist in one session.
    # The dashboard stays on: Ray Train V2 checks its controller through the State API it serves.
    ray.init(num_cpus=4, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_recipe(plugins):
    from rsforge.core.recipe import parse_recipe

    raw = yaml.safe_load((ROOT / "recipes" / "tiny.yaml").read_text())
    raw.pop("data")
    return parse_recipe(raw, plugins.registry).prepared(TINY_CORPUS)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_recipe, plugins) -> Path:
    """A saved, untrained two-image model (change captioning + change mask)."""
    from rsforge.core.model import RSForgeModel

    torch.manual_seed(0)
    model = RSForgeModel.from_recipe(tiny_recipe, plugins)
    return model.save_pretrained(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def tiny_single_image_model_dir(tmp_path_factory, tiny_recipe, plugins) -> Path:
    """A saved, untrained one-image model (captioning, VQA, classification, grounding)."""
    from rsforge.core.model import RSForgeModel

    bridges = [b for b in tiny_recipe.bridges if b.name != "difference"]
    recipe = tiny_recipe.model_copy(update={"name": "tiny-single-image", "bridges": bridges, "heads": []})
    torch.manual_seed(0)
    return RSForgeModel.from_recipe(recipe, plugins).save_pretrained(tmp_path_factory.mktemp("models") / "tiny-single")
