"""Binary change labels of the public releases, in LEVIR-CD's layout: read when their convention is known
to be binary (0/255, 0/1), refused with the release named when it is another one, never guessed at."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rsforge.core.cli import main
from rsforge.datasets.levir import label_problem, read_levir_cd

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"
CHANGE = np.eye(8, dtype=bool) | np.eye(8, dtype=bool)[::-1]


def _save(path: Path, image: Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _grey(values: tuple[int, int]) -> Image.Image:
    return Image.fromarray(np.where(CHANGE, values[1], values[0]).astype(np.uint8))


def _palette() -> Image.Image:
    img = Image.fromarray(CHANGE.astype(np.uint8)).convert("P")
    img.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    return img


# name -> the label as that release ships it (the source of each convention in `levir.label_problem`)
READ = {
    "levir_cd_0_255": _grey((0, 255)),  # LEVIR-CD, DSIFN-CD, WHU-CD, SYSU-CD, S2Looking label/: mode L 0/255
    "zero_one": _grey((0, 1)),  # copies re-encoded to 0/1
    "one_bit": Image.fromarray(CHANGE),  # mode "1"
    "sztaki_rgb_bmp": Image.fromarray(np.stack([np.where(CHANGE, 255, 0).astype(np.uint8)] * 3, -1)),  # grey RGB
    "grey_palette": _palette(),
    "no_change_anywhere": _grey((0, 0)),
}
REFUSED = {
    "oscd_raw": (_grey((1, 2)), r"label values \{1, 2\}: this looks like raw OSCD \(1 = no change, 2 = change\)"),
    "levir_mci": (_grey((0, 128)), r"looks like LEVIR-MCI \(128 = road, 255 = building\).*levir_mci reader"),
    "second_rgb": (Image.fromarray(np.where(CHANGE[..., None], [0, 0, 255], [255, 255, 255]).astype(np.uint8)),
                   r"RGB-coded label \(colours \(0, 0, 255\), \(255, 255, 255\)\).*second reader"),
    "second_index": (_grey((0, 5)), r"SECOND's index-encoded land cover.*second reader"),
    "other": (_grey((0, 200)), r"label must hold only 0/255 or 0/1, found values 0, 200"),
}


def _layout(root: Path, labels: dict[str, Image.Image]) -> Path:
    rgb = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
    for name, label in labels.items():
        _save(root / "test" / "A" / f"{name}.png", rgb)
        _save(root / "test" / "B" / f"{name}.png", rgb)
        _save(root / "test" / "label" / f"{name}.png", label)
    return root


def test_binary_conventions_are_read(tmp_path):
    samples = read_levir_cd(_layout(tmp_path, READ), "test")
    assert sorted(s.id for s in samples) == sorted(f"{n}.png" for n in READ)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_other_conventions_are_refused_by_name(tmp_path, caplog, name):
    label, reason = REFUSED[name]
    with caplog.at_level(logging.WARNING, logger="rsforge.data"):
        assert read_levir_cd(_layout(tmp_path, {name: label}), "test") == []
    assert any(f"{name}.png" in m for m in caplog.messages)
    assert any(re.search(reason, m) for m in caplog.messages), caplog.messages


def test_oscd_raw_tif_labels_are_refused_as_oscd(tmp_path):
    """OSCD ships its maps as `cm/<city>-cm.tif` of 1 / 2; a 16-bit TIFF reads as stored."""
    path = _save(tmp_path / "beirut.tif", Image.fromarray(np.where(CHANGE, 2, 1).astype(np.uint16)))
    assert "raw OSCD" in label_problem(path)


def test_data_check_refuses_a_raw_oscd_label_before_training(tmp_path, capsys):
    _layout(tmp_path, {"good": READ["levir_cd_0_255"], "beirut": REFUSED["oscd_raw"][0]})
    assert main(["data", "check", str(tmp_path), "--format", "levir_cd", "--split", "test"]) == 0
    out = capsys.readouterr().out
    assert "test: 1 samples" in out and "beirut.png" in out and "this looks like raw OSCD" in out


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED}: the shared data samples are not here")
@pytest.mark.parametrize("folder", ["levir_cd", "dsifn_cd", "oscd", "sztaki_airchange"])
def test_the_real_released_labels_read_as_binary(folder):
    labels = sorted((SHARED / folder / "label").glob("*.png"))
    assert labels and all(label_problem(p) is None for p in labels)
