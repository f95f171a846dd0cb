from rsforge.core.hookspecs import hookimpl
from rsforge.encoders.configs import TimmEncoderConfig


@hookimpl
def register_encoders(register):
    register("timm", factory="rsforge.encoders.timm_encoder:TimmEncoder", config=TimmEncoderConfig,
             description="any timm backbone (ViT, ResNet, ...): patch tokens + feature maps",
             example={"model_name": "vit_tiny_patch16_224", "image_size": 32, "num_maps": 2,
                      "model_kwargs": {"patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}})
