import torch

from rsforge.core.masks import logits_to_mask, mask_probabilities, mask_to_uint8, probabilities_to_mask


def test_one_channel_thresholds_the_sigmoid_and_k_classes_take_the_argmax():
    g = torch.Generator().manual_seed(0)
    binary = torch.randn(2, 1, 8, 8, generator=g)
    assert torch.equal(logits_to_mask(binary, 0.3), torch.sigmoid(binary)[:, 0] > 0.3)
    classes = torch.randn(2, 4, 8, 8, generator=g)
    assert torch.equal(logits_to_mask(classes), classes.argmax(dim=1))
    # Blended probabilities (a mean of two tiles' probabilities) follow the same rule.
    blended = (mask_probabilities(classes) + mask_probabilities(classes.flip(-1))) / 2
    assert torch.equal(probabilities_to_mask(blended), blended.argmax(dim=1))


def test_masks_are_written_as_0_255_or_class_ids():
    assert mask_to_uint8(torch.tensor([[True, False]])).tolist() == [[255, 0]]
    assert mask_to_uint8(torch.tensor([[3, 0]])).tolist() == [[3, 0]]
    assert mask_to_uint8(torch.tensor([[True]])).dtype == torch.uint8
