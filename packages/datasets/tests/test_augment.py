"""`train.augment`: geometric changes keep images, mask and boxes aligned; photometric ones are drawn per
date; evaluation's view is untouched; views are a function of (seed, epoch, index) alone."""

import numpy as np
import pytest
import torch
from PIL import Image

from rsforge.core.recipe import AugmentConfig
from rsforge.core.sample import Sample, Turn
from rsforge.datasets.augment import TrainingView, draw_seed
from rsforge.datasets.images import load_image, load_mask
from rsforge.datasets.torch_dataset import EpochSampler, SampleDataset

H, W = 8, 10


def _pattern() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two dates whose channel 0 is a unique id per pixel, a mask that is a function of that id (a
    rectangle), and the rectangle's box: any misalignment shows."""
    ids = torch.arange(H * W, dtype=torch.float32).reshape(H, W) / (H * W)
    images = torch.stack([torch.stack([ids, 1 - ids, ids * 0.5]), torch.stack([ids, ids * 0.25, 1 - ids])])
    mask = torch.zeros(H, W)
    mask[2:5, 3:9] = 1
    return images, mask, torch.tensor([[3.0, 2.0, 9.0, 5.0]])


def _extent(mask: torch.Tensor) -> list[float]:
    ys, xs = np.nonzero(mask.numpy())
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


@pytest.mark.parametrize(("option", "flip"), [("hflip", lambda a: np.flip(a, -1)), ("vflip", lambda a: np.flip(a, -2))])
def test_flips_move_dates_mask_and_boxes_as_numpy_flips(option, flip):
    images, mask, _ = _pattern()
    view = TrainingView(H, crop=None, augment=AugmentConfig(**{option: 1.0}))
    # a square view of the model's size: no resize, so every pixel can be compared exactly
    square, sq_mask = images[..., :H], mask[:, :H]
    out, out_mask, out_boxes = view(square, sq_mask, torch.tensor([[3.0, 2.0, 8.0, 5.0]]), seed=0)
    np.testing.assert_array_equal(out.numpy(), flip(square.numpy()))
    np.testing.assert_array_equal(out_mask.numpy(), flip(sq_mask.numpy()))
    assert out_boxes[0].tolist() == _extent(out_mask)


def test_quarter_turns_match_numpy_rot90_for_dates_mask_and_boxes():
    images, mask, _ = _pattern()
    view = TrainingView(H, augment=AugmentConfig(rot90=True))
    square, sq_mask, sq_boxes = images[..., :H], mask[:, :H], torch.tensor([[3.0, 2.0, 8.0, 5.0]])
    seen = set()
    for seed in range(24):
        out, out_mask, out_boxes = view(square, sq_mask, sq_boxes, seed=seed)
        turns = [k for k in range(4) if np.array_equal(out.numpy(), np.rot90(square.numpy(), k, (-2, -1)))]
        assert len(turns) == 1, f"seed {seed}: not a quarter turn of the input"
        np.testing.assert_array_equal(out_mask.numpy(), np.rot90(sq_mask.numpy(), turns[0]))
        assert out_boxes[0].tolist() == _extent(out_mask)
        seen.add(turns[0])
    assert seen == {0, 1, 2, 3}


@pytest.mark.parametrize("seed", range(6))
def test_crop_flips_turns_and_rescale_keep_every_pixel_with_its_label(seed):
    images, mask, boxes = _pattern()
    augment = AugmentConfig(hflip=0.5, vflip=0.5, rot90=True, scale=(0.3, 1.0))
    # nearest: images and mask resampled on one grid, so the id -> label relation must survive exactly
    view = TrainingView(6, "nearest", crop=7, augment=augment)
    out, out_mask, out_boxes = view(images, mask, boxes, seed=seed)
    assert out.shape == (2, 3, 6, 6) and out_mask.shape == (6, 6)
    inside = torch.zeros(H * W)
    inside[(mask.flatten() > 0).nonzero()] = 1
    ids = (out[0, 0] * H * W).round().long()
    assert torch.equal(out[0, 0], out[1, 0])  # both dates moved alike
    assert torch.equal(out_mask, inside[ids])
    if out_mask.any():  # boxes follow (to within the rescale's rounding)
        np.testing.assert_allclose(out_boxes[0].numpy(), _extent(out_mask), atol=1.0)


def test_photometric_changes_are_drawn_per_date():
    images, _, _ = _pattern()
    same = torch.stack([images[0], images[0]])
    augment = AugmentConfig(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, gamma=(0.7, 1.4), blur=(0.5, 1.5),
                            blur_p=1.0)
    out, _, _ = TrainingView(H, augment=augment)(same[..., :H], seed=3)
    assert not torch.allclose(out[0], out[1])
    assert out.min() >= 0 and out.max() <= 1
    geometric_only, _, _ = TrainingView(H, augment=AugmentConfig(hflip=1.0))(same[..., :H], seed=3)
    assert torch.equal(geometric_only[0], geometric_only[1])


def test_views_are_reproducible_and_leave_the_global_generator_alone():
    images, mask, boxes = _pattern()
    view = TrainingView(6, crop=7, augment=AugmentConfig(hflip=0.5, rot90=True, brightness=0.3))
    torch.manual_seed(5)
    first = view(images, mask, boxes, seed=draw_seed(0, 0, 1))
    after_view = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(after_view, torch.rand(3))  # the view drew from its own, forked generator
    again = view(images, mask, boxes, seed=draw_seed(0, 0, 1))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    others = [view(images, mask, boxes, seed=draw_seed(*key))[0] for key in ((0, 1, 1), (0, 0, 2), (1, 0, 1))]
    assert all(not torch.equal(first[0], o) for o in others)


def _pair(tmp_path, boxes=None) -> Sample:
    rng = np.random.default_rng(0)
    paths = []
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    Image.fromarray((rng.random((H, W)) > 0.5).astype(np.uint8) * 255).save(tmp_path / "m.png")
    return Sample("p", tuple(paths), [Turn("user", "what changed?")], task="change_mask", mask=str(tmp_path / "m.png"),
                  boxes=boxes)


def test_evaluation_view_is_untouched(tmp_path):
    sample = _pair(tmp_path)
    item = SampleDataset([sample], 6)[0]
    expected = torch.stack([load_image(p, 6) for p in sample.images])
    assert torch.equal(item["images"], expected) and torch.equal(item["mask"], load_mask(sample.mask, 6))


def test_dataset_draws_by_epoch_through_the_sampler(tmp_path):
    sample = _pair(tmp_path)
    augment = AugmentConfig(hflip=0.5, rot90=True)
    dataset = SampleDataset([sample] * 2, 6, crop=6, augment=augment, seed=7)
    sampler = EpochSampler(dataset, num_replicas=1, rank=0, seed=7)
    fresh = SampleDataset([sample], 6, crop=6, augment=augment, seed=7)
    assert torch.equal(dataset[0]["images"], fresh[0]["images"])  # same (seed, epoch, index): same draw
    views = set()
    for epoch in range(6):
        sampler.set_epoch(epoch)
        assert dataset.epoch == epoch
        views.add(dataset[0]["images"].numpy().tobytes())
    assert len(views) > 1


def _grounding(tmp_path, coordinates: str | None) -> Sample:
    sample = _pair(tmp_path, boxes=[[1.0, 1.0, 4.0, 4.0]])
    sample.conversation.append(Turn("assistant", "[100, 125, 400, 500]"))
    if coordinates:
        sample.meta.update(coordinates=coordinates, image_size=(W, H))
    return sample


def test_crops_refuse_samples_whose_answers_name_boxes(tmp_path):
    boxed = _grounding(tmp_path, "norm1000")
    with pytest.raises(ValueError, match=r"sample p: its answer names boxes, and train.crop .*may cut it out"):
        SampleDataset([boxed], 6, crop=4)
    with pytest.raises(ValueError, match=r"its meta has no `coordinates`"):
        SampleDataset([_grounding(tmp_path, None)], 6, augment=AugmentConfig(vflip=1.0))
    assert len(SampleDataset([boxed], 6, augment=AugmentConfig(brightness=0.2))) == 1


@pytest.mark.parametrize(("coordinates", "answer"), [("norm1000", "[100, 500, 400, 875]"),
                                                     ("pixels", "[0.6, 3, 2.4, 5.2]")])
def test_a_flip_rewrites_the_grounding_answer(tmp_path, coordinates, answer):
    # A vertical flip of the W x H = 10 x 8 image maps y to H - y: the box [1, 1, 4, 4] becomes [1, 4, 4, 7];
    # resized to 6 x 6 for the model, x scales by 6 / 10 and y by 6 / 8: [0.6, 3, 2.4, 5.25], which is
    # [100, 500, 400, 875] in thousandths of the input's side.
    assert (W, H) == (10, 8)
    item = SampleDataset([_grounding(tmp_path, coordinates)], 6, augment=AugmentConfig(vflip=1.0))[0]
    moved = item["sample"]
    assert moved.boxes == [pytest.approx([0.6, 3.0, 2.4, 5.25])]
    assert moved.answer == answer and moved.references == [answer] and moved.meta["image_size"] == (6, 6)


def test_recipe_fields_and_the_feature_cache_refusal():
    from rsforge.core.recipe import TrainConfig

    assert TrainConfig().crop is None and TrainConfig().augment is None
    train = TrainConfig(crop=256, augment={"hflip": 0.5, "rot90": True, "gamma": [0.8, 1.25]})
    assert train.augment.gamma == (0.8, 1.25) and train.augment.blur is None
    with pytest.raises(ValueError, match=r"train\.feature_cache .* train\.crop or train\.augment"):
        TrainConfig(feature_cache=True, augment={"vflip": 0.5})
    with pytest.raises(ValueError, match=r"augment\.scale\n.*at most 1"):
        TrainConfig(augment={"scale": [0.5, 1.5]})
