"""Vision encoders for rsforge: images (B, 3, H, W) -> tokens (B, N, D) + feature maps."""
