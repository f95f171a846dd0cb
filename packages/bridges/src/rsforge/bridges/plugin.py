from rsforge.bridges.configs import DifferenceBridgeConfig, MLPProjectorConfig
from rsforge.core.hookspecs import hookimpl


@hookimpl
def register_bridges(register):
    register("difference", factory="rsforge.bridges.difference:DifferenceBridge", config=DifferenceBridgeConfig,
             description="bi-temporal fusion of [t0, t1, t1-t0] per token (T: 2 -> 1)",
             example={"in_dim": 32})
    register("mlp_projector", factory="rsforge.bridges.mlp_projector:MLPProjector", config=MLPProjectorConfig,
             description="LLaVA-style MLP from visual width to decoder width",
             example={"in_dim": 32, "out_dim": 48})
