"""The readers on samples of the real public datasets in `../shared/data` (each folder's README names its
source), read as a user would: `rsforge data check DIR --format F`."""

from __future__ import annotations

from pathlib import Path

import pytest

from rsforge.core.cli import main

from .conftest import ROOT

SHARED = ROOT.parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED}: the shared data samples are not here")

# folder -> (test-split samples, the sizes of the images that data check decodes)
CHANGE_MASKS = {
    "levir_cd": (3, {"256x256 RGB": 6}),
    "dsifn_cd": (3, {"256x256 RGB": 6}),
    "oscd": (4, {"1070x1180 RGB": 2, "540x695 RGB": 2, "563x339 RGB": 2, "772x902 RGB": 2}),
    "sztaki_airchange": (1, {"952x640 RGB": 2}),
}


@pytest.mark.parametrize("folder", sorted(CHANGE_MASKS))
def test_change_mask_folders_read_as_levir_cd(folder, plugins):
    from rsforge.datasets.check import check_dataset
    from rsforge.datasets.levir import LevirCDDatasetConfig, load_levir_cd

    count, sizes = CHANGE_MASKS[folder]
    report = check_dataset(load_levir_cd, LevirCDDatasetConfig(root=str(SHARED / folder)), splits=["test"])
    (split,) = report.splits
    assert report.problems == [] and len(split.samples) == count
    assert dict(split.image_kinds) == sizes
    assert all(s.task == "change_mask" and s.mask and len(s.images) == 2 for s in split.samples)


def test_data_check_cli_names_the_splits_a_sample_folder_lacks(capsys):
    assert main(["data", "check", str(SHARED / "levir_cd"), "--format", "levir_cd"]) == 0
    out = capsys.readouterr().out
    assert "test: 3 samples" in out and "no LEVIR-CD split 'train'" in out and "usable" in out


def test_levir_cc_reads_its_real_captions():
    from rsforge.datasets.levir import read_levir_cc

    (sample,) = read_levir_cc(SHARED / "levir_cc", "test")
    assert len(sample.references) == 5 and all(sample.references)
    assert all((SHARED / "levir_cc").resolve() in Path(p).resolve().parents for p in sample.images)
