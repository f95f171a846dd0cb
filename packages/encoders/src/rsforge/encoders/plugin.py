from rsforge.core.hookspecs import hookimpl
from rsforge.encoders.configs import TimmEncoderConfig


@hookimpl
def register_encoders(register):
    register("timm", factory="rsforge.encoders.timm_encoder:TimmEncoder", config=TimmEncoderConfig,
             description="any timm backbone (ViT, ResNet, ...): patch tokens + feature maps")
