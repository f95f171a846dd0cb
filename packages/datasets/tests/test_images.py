import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from rsforge.core.sample import Sample, Turn
from rsforge.datasets.images import ImageError, load_image, load_mask, tensor_to_pil
from rsforge.datasets.torch_dataset import SampleDataset, collate


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares `width` x `height` but holds almost no data: a decompression bomb as far
    as any reader that trusts the header is concerned."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _rgb(path: Path, h: int = 20, w: int = 30, seed: int = 0) -> Path:
    return _save(path, np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


# ------------------------------------------------------------------------------------------ images
def test_load_image(tmp_path):
    path = _rgb(tmp_path / "a.png")
    t = load_image(path)
    assert t.dtype == torch.float32 and t.shape == (3, 20, 30)
    assert t.min() >= 0 and t.max() <= 1
    expected = torch.from_numpy(np.array(Image.open(path))).permute(2, 0, 1).float() / 255
    assert torch.equal(t, expected)
    assert torch.equal(load_image(path.read_bytes()), t)
    assert torch.equal(load_image(str(path)), t)
    small = load_image(path, size=16)
    assert small.shape == (3, 16, 16) and small.min() >= 0 and small.max() <= 1


def test_grey_and_alpha_images_become_rgb(tmp_path):
    grey = load_image(_save(tmp_path / "g.png", np.full((5, 6), 200, np.uint8)))
    assert grey.shape == (3, 5, 6) and torch.allclose(grey, torch.full_like(grey, 200 / 255))
    rgba = load_image(_save(tmp_path / "rgba.png", np.zeros((5, 6, 4), np.uint8)))
    assert rgba.shape == (3, 5, 6)


def test_decompression_bomb_refused_before_decoding(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(9000, 9000))  # 81 MP: over our limit, under PIL's own
    with pytest.raises(ImageError, match=r"bomb\.png: image is 9000x9000 \(81\.0 MP\), over the limit"):
        load_image(bomb)
    huge = _png_header(100_000, 100_000)  # PIL itself refuses this one while opening
    with pytest.raises(ImageError, match="image bytes: refused as a decompression bomb"):
        load_image(huge)
    with pytest.raises(ImageError, match=r"over the limit of 0\.0 MP"):
        load_image(_rgb(tmp_path / "ok.png"), max_pixels=100)


def test_not_an_image(tmp_path):
    with pytest.raises(ImageError, match="image bytes: not an image"):
        load_image(b"this is not a picture")
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(ImageError, match=r"notes\.png: not an image"):
        load_image(text)
    with pytest.raises(ImageError, match=r"missing\.png: cannot open image"):
        load_image(tmp_path / "missing.png")


def test_wide_images_are_scaled_rather_than_clipped(tmp_path):
    path = _save(tmp_path / "deep.png", np.full((4, 4), 3000, np.uint16))
    assert torch.equal(load_image(path), torch.full((3, 4, 4), np.float32(3000) / np.float32(65535)))
    assert load_mask(_save(tmp_path / "deep_mask.png", np.eye(4, dtype=np.uint16))).sum() == 4


def test_truncated_image(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
        buffer, "PNG"
    )
    cut = tmp_path / "cut.png"
    cut.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match=r"cut\.png: truncated or corrupt"):
        load_image(cut)


# ------------------------------------------------------------------------------------------- masks
@pytest.mark.parametrize("high", [1, 255])
def test_mask_0_1_and_0_255_read_as_0_1(tmp_path, high):
    array = np.zeros((8, 8), np.uint8)
    array[2:5, 3:7] = high
    mask = load_mask(_save(tmp_path / "m.png", array))
    assert mask.dtype == torch.float32 and mask.shape == (8, 8)
    assert torch.equal(mask, torch.from_numpy((array > 0).astype(np.float32)))
    resized = load_mask(tmp_path / "m.png", size=16)
    assert resized.shape == (16, 16) and set(resized.unique().tolist()) == {0.0, 1.0}
    assert resized.sum() == 4 * mask.sum()


def test_one_bit_and_empty_masks(tmp_path):
    Image.fromarray(np.eye(4, dtype=bool)).save(tmp_path / "bits.png")
    assert torch.equal(load_mask(tmp_path / "bits.png"), torch.eye(4))
    assert load_mask(_save(tmp_path / "empty.png", np.zeros((4, 4), np.uint8))).sum() == 0


def test_non_binary_label_is_an_error(tmp_path):
    array = np.zeros((8, 8), np.uint8)
    array[0, :3] = (1, 128, 255)
    path = _save(tmp_path / "soft.png", array)
    with pytest.raises(
        ImageError, match=r"soft\.png: a change mask must hold only 0/255 or 0/1, found values 0, 1, 128, 255"
    ):
        load_mask(path)


def test_tensor_to_pil_round_trip(tmp_path):
    image = load_image(_rgb(tmp_path / "a.png"))
    pil = tensor_to_pil(image)
    assert pil.mode == "RGB" and pil.size == (30, 20)
    assert np.array_equal(np.asarray(pil), np.asarray(Image.open(tmp_path / "a.png")))
    assert tensor_to_pil(torch.eye(3)).mode == "L"
    with pytest.raises(ValueError, match="expected"):
        tensor_to_pil(torch.zeros(2, 4, 4))


# ----------------------------------------------------------------------------------- dataset/collate
def _sample(tmp_path: Path, sid: str, n_images: int = 2, with_mask: bool = False) -> Sample:
    images = tuple(str(_rgb(tmp_path / f"{sid}_{t}.png", seed=t)) for t in range(n_images))
    mask = None
    if with_mask:
        mask = str(_save(tmp_path / f"{sid}_mask.png", np.tril(np.full((20, 30), 255, np.uint8))))
    conversation = [Turn("user", "what changed"), Turn("assistant", f"answer {sid}")]
    return Sample(sid, images, conversation, mask=mask, references=[f"answer {sid}", "other"], changed=True)


def test_collate_shapes(tmp_path):
    samples = [_sample(tmp_path, "a", with_mask=True), _sample(tmp_path, "b")]
    dataset = SampleDataset(samples, image_size=16)
    item = dataset[0]
    assert item["images"].shape == (2, 3, 16, 16) and item["mask"].shape == (16, 16)
    assert dataset[1]["mask"] is None and item["sample"] is samples[0]

    (batch,) = DataLoader(dataset, batch_size=2, collate_fn=collate)
    assert batch.images.shape == (2, 2, 3, 16, 16) and batch.images.dtype == torch.float32
    assert batch.masks.shape == (2, 16, 16) and batch.masks.dtype == torch.float32
    assert batch.mask_valid.tolist() == [True, False] and batch.mask_valid.dtype == torch.bool
    assert batch.masks[0].sum() > 0 and batch.masks[1].sum() == 0
    assert batch.ids == ["a", "b"]
    assert batch.prompts == [[Turn("user", "what changed")]] * 2
    assert [c[-1].text for c in batch.conversations] == ["answer a", "answer b"]
    assert batch.references == [["answer a", "other"], ["answer b", "other"]]
    assert batch.conversations[1] == samples[1].conversation
    assert batch.tasks == ["change_captioning"] * 2 and batch.changed == [True, True]


def test_collate_without_masks(tmp_path):
    dataset = SampleDataset([_sample(tmp_path, "a", 1), _sample(tmp_path, "b", 1)], image_size=8)
    batch = collate([dataset[0], dataset[1]])
    assert batch.images.shape == (2, 1, 3, 8, 8)
    assert batch.masks is None and batch.mask_valid.tolist() == [False, False]


def test_collate_mixed_image_counts(tmp_path):
    dataset = SampleDataset([_sample(tmp_path, "pair"), _sample(tmp_path, "single", 1)], image_size=8)
    with pytest.raises(ValueError, match=r"different numbers of images: pair \(2\), single \(1\)"):
        collate([dataset[0], dataset[1]])
