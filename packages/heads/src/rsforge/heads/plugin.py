from rsforge.core.hookspecs import hookimpl
from rsforge.heads.configs import ChangeMaskHeadConfig


@hookimpl
def register_heads(register):
    register("change_mask", factory="rsforge.heads.change_mask:ChangeMaskHead", config=ChangeMaskHeadConfig,
             description="per-scale difference fusion + upsampling decoder -> change logits (BCE + Dice)",
             example={"in_channels": [16, 24], "hidden": 8})
