from rsforge.core.hookspecs import hookimpl

TINY_VIT = {"model_name": "vit_tiny_patch16_224", "image_size": 32,
            "model_kwargs": {"patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}}


@hookimpl
def register_encoders(register):
    register("timm", factory="rsforge.encoders.timm_encoder:TimmEncoder",
             config="rsforge.encoders.configs:TimmEncoderConfig",
             description="any timm backbone (ViT, EVA, Swin, ResNet, ...): patch tokens + feature maps",
             example={**TINY_VIT, "model_kwargs": {**TINY_VIT["model_kwargs"], "depth": 2}, "num_maps": 2})
    register("hf_vision", factory="rsforge.encoders.hf_vision:HFVisionEncoder",
             config="rsforge.encoders.configs:HFVisionConfig",
             description="a Hugging Face vision tower (CLIP, SigLIP, DINOv2): patch tokens + hidden layers as maps",
             example={"image_size": 32, "map_layers": [0, -1],
                      "config": {"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                                 "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 32,
                                 "patch_size": 8}})
    register("dual", factory="rsforge.encoders.dual:DualEncoder", config="rsforge.encoders.configs:DualEncoderConfig",
             description="two towers on one image, projected to one width and fused per patch (sum or concat)",
             example={"image_size": 32, "out_dim": 32, "encoders": [
                 {"name": "timm", **TINY_VIT},
                 {"name": "timm", **TINY_VIT, "model_kwargs": {**TINY_VIT["model_kwargs"], "patch_size": 16,
                                                               "embed_dim": 48}}]})
