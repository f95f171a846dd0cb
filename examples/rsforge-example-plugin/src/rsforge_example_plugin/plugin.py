"""Registration only: importing this module must stay cheap (no torch), so the factory is a string."""

from rsforge.core.hookspecs import hookimpl
from rsforge_example_plugin.configs import TokenPoolerConfig


@hookimpl
def register_bridges(register):
    register("token_pooler", factory="rsforge_example_plugin.pooler:TokenPooler", config=TokenPoolerConfig,
             description="average-pools a square grid of visual tokens to grid x grid tokens",
             example={"in_dim": 32, "grid": 2})
