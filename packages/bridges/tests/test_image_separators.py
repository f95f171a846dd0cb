import pytest
import torch

from rsforge.bridges.configs import ImageSeparatorsConfig
from rsforge.bridges.image_separators import ImageSeparators
from rsforge.core.interfaces import VisualFeatures


def _separators(**extra) -> ImageSeparators:
    torch.manual_seed(0)
    return ImageSeparators(ImageSeparatorsConfig(name="image_separators", in_dim=8, **extra))


def test_each_image_starts_with_its_own_marker():
    bridge = _separators(max_images=3)
    tokens = torch.randn(2, 3, 5, 8)
    out = bridge(VisualFeatures(tokens)).tokens
    assert out.shape == (2, 3, 6, 8)
    assert torch.equal(out[:, :, 1:], tokens)  # image tokens untouched
    assert torch.equal(out[0, :, 0], bridge.starts)  # image i's marker is the i-th learned embedding
    assert not torch.allclose(out[:, 0, 0], out[:, 1, 0])
    # A single image gets image 1's marker.
    assert torch.equal(bridge(VisualFeatures(tokens[:, :1])).tokens[:, 0, 0], out[:, 0, 0])


def test_end_marker_closes_every_image_and_markers_train():
    bridge = _separators(max_images=2, end_marker=True)
    out = bridge(VisualFeatures(torch.randn(2, 2, 5, 8))).tokens
    assert out.shape == (2, 2, 7, 8)
    assert torch.equal(out[:, 0, -1], out[:, 1, -1])
    out.square().sum().backward()
    assert bridge.starts.grad.abs().sum() > 0 and bridge.end.grad.abs().sum() > 0


def test_too_many_images_and_a_width_change_are_errors():
    with pytest.raises(ValueError, match="3 images per sample, but max_images is 2"):
        _separators(max_images=2)(VisualFeatures(torch.randn(1, 3, 5, 8)))
    with pytest.raises(ValueError, match="put a projector bridge"):
        _separators(out_dim=16)
