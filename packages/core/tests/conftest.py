import pytest

from rsforge.core.plugins import PluginManager

from .toy_parts import ToyPlugin


@pytest.fixture
def toy_plugins() -> PluginManager:
    """A manager with only the toy parts: no entry point is loaded."""
    pm = PluginManager(entry_points_source=[])
    pm.register(ToyPlugin(), name="toy", distribution="toy-dist")
    return pm
