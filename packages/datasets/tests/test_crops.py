"""`train.crop`: a random square of native pixels, at one place in both dates and the mask."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rsforge.core.sample import Sample, Turn
from rsforge.datasets.torch_dataset import SampleDataset

OSCD = Path("/work/shared/data/oscd")
WIDTH, HEIGHT = 1070, 1180  # OSCD's beirut tile


def _coded(width: int, height: int) -> np.ndarray:
    """An 8-bit RGB image whose every pixel spells its own (x, y): R = x mod 251, G = y mod 251,
    B = the two quotients."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x % 251, y % 251, (x // 251) * 5 + y // 251], -1).astype(np.uint8)


def _where(pixel: torch.Tensor) -> tuple[int, int]:
    r, g, b = (pixel * 255).round().long().tolist()
    return (b // 5) * 251 + r, (b % 5) * 251 + g


def _scene(tmp_path: Path, width: int, height: int) -> tuple[Sample, np.ndarray, np.ndarray]:
    before = _coded(width, height)
    after = 255 - before
    y, x = np.mgrid[0:height, 0:width]
    mask = ((x * 3 + y * 7) % 11 == 0).astype(np.uint8) * 255
    for name, array in (("a.png", before), ("b.png", after), ("m.png", mask)):
        Image.fromarray(array).save(tmp_path / name)
    sample = Sample("beirut", (str(tmp_path / "a.png"), str(tmp_path / "b.png")), [Turn("user", "change?")],
                    task="change_mask", mask=str(tmp_path / "m.png"))
    return sample, before, mask


def test_crop_is_native_pixels_at_one_place_in_both_dates_and_the_mask(tmp_path):
    sample, before, mask = _scene(tmp_path, WIDTH, HEIGHT)
    dataset = SampleDataset([sample], 256, crop=256, seed=0)
    places = set()
    for epoch in range(4):
        dataset.set_epoch(epoch)
        item = dataset[0]
        images = item["images"]
        assert images.shape == (2, 3, 256, 256) and item["mask"].shape == (256, 256)
        x0, y0 = _where(images[0, :, 0, 0])
        window = before[y0 : y0 + 256, x0 : x0 + 256]
        # not resized: every pixel is the native one, so a square of the scene stays a square
        np.testing.assert_array_equal((images[0] * 255).round().byte().permute(1, 2, 0).numpy(), window)
        np.testing.assert_array_equal((images[1] * 255).round().byte().permute(1, 2, 0).numpy(), 255 - window)
        np.testing.assert_array_equal(item["mask"].numpy(), mask[y0 : y0 + 256, x0 : x0 + 256] / 255)
        places.add((x0, y0))
    assert len(places) == 4  # a new place each epoch


def test_crop_larger_than_the_input_is_resized_and_keeps_its_aspect(tmp_path):
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    cells = (((x // 64 + y // 64) % 2) * 255).astype(np.uint8)  # a checkerboard of 64-pixel squares
    Image.fromarray(cells).save(tmp_path / "c.png")
    sample = Sample("c", (str(tmp_path / "c.png"),), [Turn("user", "?")])

    def edges(images: torch.Tensor) -> tuple[float, float]:
        # cell edges met along a row and down a column (median: a row of edge pixels meets none)
        board = images[0, 0] > 0.5
        return (board[:, 1:] != board[:, :-1]).sum(1).median().item(), \
            (board[1:] != board[:-1]).sum(0).median().item()

    across, down = edges(SampleDataset([sample], 64, crop=512, seed=1)[0]["images"])
    assert 7 <= across <= 8 and 7 <= down <= 8  # 512 / 64 = 8 cells each way: squares stayed squares
    across, down = edges(SampleDataset([sample], 64)[0]["images"])
    assert down - across >= 1  # the whole-image resize squashes 1070 x 1180 into a square: cells are not


def test_images_smaller_than_the_crop_are_refused(tmp_path):
    sample, _, _ = _scene(tmp_path, 300, 200)
    with pytest.raises(ValueError, match=r"a\.png: image is 300x200, smaller than train\.crop = 256"):
        SampleDataset([sample], 64, crop=256)[0]


@pytest.mark.skipif(not (OSCD / "list" / "test.txt").is_file(), reason="OSCD not in /work/shared/data")
def test_real_oscd_pair_is_cropped_from_native_pixels():
    from rsforge.datasets.images import load_image, load_mask
    from rsforge.datasets.levir import read_levir_cd

    samples = read_levir_cd(OSCD, "test")
    beirut = next(s for s in samples if Path(s.images[0]).stem == "beirut")
    item = SampleDataset([beirut], 128, crop=128, seed=0)[0]
    dates = [load_image(p) for p in beirut.images]
    mask = load_mask(beirut.mask)
    assert dates[0].shape == (3, 1180, 1070)  # read at native size, aspect and all
    crop = item["images"][0]
    # find the crop in the scene: candidates by the first pixel, confirmed on the whole window
    hits = (dates[0] == crop[:, :1, :1]).all(0).nonzero().tolist()
    found = [(y, x) for y, x in hits if y + 128 <= 1180 and x + 128 <= 1070
             and torch.equal(dates[0][:, y : y + 128, x : x + 128], crop)]
    assert found, "the crop is not a window of native pixels"
    y, x = found[0]
    assert torch.equal(item["images"][1], dates[1][:, y : y + 128, x : x + 128])
    assert torch.equal(item["mask"], mask[y : y + 128, x : x + 128])
