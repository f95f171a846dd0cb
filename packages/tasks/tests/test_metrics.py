"""Caption metrics against pycocoevalcap's own scorers, mask metrics against confusion matrices
written out by hand, and box metrics against torchvision and areas worked out by hand. The caption
tests run Java (PTB tokenizer, METEOR), offline."""

from __future__ import annotations

import logging
import subprocess

import numpy as np
import pytest
import torch
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
from shapely import Polygon
from torchvision.ops import box_iou as torchvision_box_iou

from rsforge.tasks.metrics import captions
from rsforge.tasks.metrics.boxes import box_iou, polygon_iou
from rsforge.tasks.metrics.captions import METRICS, caption_metrics, caption_metrics_by_group
from rsforge.tasks.metrics.masks import MaskConfusion

REFS = {
    "0001": [
        "Two new buildings were built on the empty land.",
        "Some houses have been constructed in the bare area.",
        "Two buildings appear on the left side.",
    ],
    "0002": ["There is no difference.", "The two scenes seem identical.", "Nothing has changed."],
    "0003": ["A road was built across the field.", "A new road appears in the middle."],
    "0004": [
        "The trees near the river were removed.",
        "Vegetation along the river disappeared.",
        "Several trees have been cut down.",
    ],
    "0005": ["There is no difference.", "No change has occurred!", "The scene remains the same."],
    "0006": ["Many buildings were built; a parking lot appears at the top."],
    "0007": ['The "old" factory was demolished.', "A large building on the right is gone."],
    "0008": ["Nothing has changed.", "The two images are the same."],
}
PREDS = {
    "0001": "Two buildings were built on the bare land.",
    "0002": "there is no difference",
    "0003": "",  # an empty prediction is scored, not rejected
    "0004": "the trees the trees the trees near the river were removed",
    "0005": "No change\r\nhas occurred!",  # a line break inside one caption
    "0006": "Many buildings were built; a parking lot appears at the top.",
    "0007": "A factory was demolished.",
    "0008": "nothing changed",
}
# "0008" has no group: it counts in "all" only.
GROUPS = {i: "unchanged" if i in {"0002", "0005"} else "changed" for i in PREDS if i != "0008"}


def _reference_scores(meteor: Meteor, preds: dict[str, str], refs: dict[str, list[str]]) -> dict[str, float]:
    """coco-caption's COCOEvalCap.evaluate, step by step: tokenize each side, run each scorer."""
    # coco-caption only replaces "\n"; its tokenizer would split "\r\n" into two lines and shift
    # every later caption, so the expected values are computed on the one-line caption.
    preds = {i: p.replace("\r\n", " ") for i, p in preds.items()}
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": r} for r in refs[i]] for i in preds})
    res = tokenizer.tokenize({i: [{"caption": p}] for i, p in preds.items()})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    meteor_score, _ = meteor.compute_score(gts, res)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    return dict(zip(METRICS, [*bleu, meteor_score, rouge, cider], strict=True))


@pytest.fixture(scope="module")
def meteor():
    scorer = Meteor()
    yield scorer
    scorer.meteor_p.stdin.close()
    scorer.meteor_p.kill()
    scorer.meteor_p.wait()


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    """caption_metrics_by_group on the fixed corpus, with SPICE asked for but its jars absent, and the
    warnings it logged."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger(captions.__name__)
    no_jars = tmp_path_factory.mktemp("spice_lib")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(captions, "_spice_lib", lambda: no_jars)
        logger.addHandler(handler)
        try:
            scores = caption_metrics_by_group(PREDS, REFS, GROUPS, spice=True)
        finally:
            logger.removeHandler(handler)
    return scores, records


def test_caption_metrics_equal_pycocoevalcap(meteor, grouped):
    scores = caption_metrics(PREDS, REFS)
    assert list(scores) == list(METRICS)
    assert scores == pytest.approx(_reference_scores(meteor, PREDS, REFS), abs=1e-12)
    assert scores == grouped[0]["all"]


def test_each_group_is_scored_as_its_own_corpus(meteor, grouped):
    scores, _ = grouped
    assert set(scores) == {"all", "changed", "unchanged"}
    for group in ("changed", "unchanged"):
        ids = [i for i in PREDS if GROUPS.get(i) == group]
        expected = _reference_scores(meteor, {i: PREDS[i] for i in ids}, {i: REFS[i] for i in ids})
        assert scores[group] == pytest.approx(expected, abs=1e-12)
    # CIDEr's document frequencies are the group's: the mean of the per-caption CIDEr of the whole
    # split over a group's ids is a different number.
    gts = PTBTokenizer().tokenize({i: [{"caption": r} for r in REFS[i]] for i in PREDS})
    res = PTBTokenizer().tokenize({i: [{"caption": p.replace("\r\n", " ")}] for i, p in PREDS.items()})
    _, per_caption = Cider().compute_score(gts, res)
    changed = [k for k, i in enumerate(gts) if GROUPS.get(i) == "changed"]
    assert scores["changed"]["CIDEr"] != pytest.approx(float(np.mean(per_caption[changed])), abs=1e-6)


def test_missing_spice_jars_skip_spice_with_one_warning(grouped):
    scores, records = grouped
    assert all("SPICE" not in group for group in scores.values())
    assert len(records) == 1
    message = records[0].getMessage()
    assert "SPICE skipped" in message and "stanford-corenlp-3.6.0-models.jar" in message
    assert "\n" not in message


def test_failing_spice_run_is_skipped_with_one_warning(tmp_path, monkeypatch, caplog):
    for jar in captions._SPICE_JARS:
        (tmp_path / jar).write_bytes(b"")

    class BrokenSpice:
        def compute_score(self, gts, res):
            raise subprocess.CalledProcessError(1, ["java", "-jar", "spice-1.0.jar"])

    monkeypatch.setattr(captions, "_spice_lib", lambda: tmp_path)
    monkeypatch.setattr(captions.coco_spice, "Spice", BrokenSpice)
    with caplog.at_level(logging.WARNING, logger=captions.__name__):
        assert captions._spice({"a": ["a road"]}, {"a": ["a road"]}) is None
    assert len(caplog.records) == 1
    assert "SPICE skipped: it failed (CalledProcessError" in caplog.records[0].getMessage()


def test_spice_scores_are_mapped_back_to_their_ids(tmp_path, monkeypatch):
    for jar in captions._SPICE_JARS:
        (tmp_path / jar).write_bytes(b"")

    class FakeSpice:
        def compute_score(self, gts, res):  # like Spice: one score per id, ids sorted
            per_caption = [{"All": {"f": len(i) / 10}} for i in sorted(gts)]
            return 0.0, per_caption

    monkeypatch.setattr(captions, "_spice_lib", lambda: tmp_path)
    monkeypatch.setattr(captions.coco_spice, "Spice", FakeSpice)
    gts = {"bb": ["x"], "a": ["y"], "ccc": ["z"]}
    assert captions._spice(gts, gts) == {"a": 0.1, "bb": 0.2, "ccc": 0.3}


def test_a_perfect_prediction_gets_bleu4_of_one():
    refs = {
        "a": ["A large building was built near the road.", "A building appears."],
        "b": ["Trees along the river were cut down.", "The trees are gone."],
    }
    scores = caption_metrics({i: r[0] for i, r in refs.items()}, refs)
    assert scores["BLEU-4"] == pytest.approx(1.0, abs=1e-6)
    assert scores["ROUGE-L"] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(
    ("preds", "refs", "error"),
    [
        ({}, {}, "no predictions"),
        ({"a": "x"}, {"b": ["x"]}, "ids differ"),
        ({"a": "x", "b": "y"}, {"a": ["x"]}, "ids differ"),
        ({"a": "x"}, {"a": []}, "has no reference"),
    ],
)
def test_invalid_inputs_are_rejected(preds, refs, error):
    with pytest.raises(ValueError, match=error):
        caption_metrics(preds, refs)


def test_wrong_types_are_rejected():
    with pytest.raises(TypeError, match="must be a string"):
        caption_metrics({"a": ["x"]}, {"a": ["x"]})
    with pytest.raises(TypeError, match="list of strings"):
        caption_metrics({"a": "x"}, {"a": "x"})


def test_invalid_groups_are_rejected():
    with pytest.raises(ValueError, match="grouped ids have no prediction"):
        caption_metrics_by_group({"a": "x"}, {"a": ["x"]}, {"a": "g", "b": "g"})
    with pytest.raises(ValueError, match="reserved"):
        caption_metrics_by_group({"a": "x"}, {"a": ["x"]}, {"a": "all"})


# --- masks -------------------------------------------------------------------------------------


def _scores(precision: float, recall: float, f1: float, iou: float, oa: float, kappa: float) -> dict:
    return {"precision": precision, "recall": recall, "f1": f1, "iou": iou, "oa": oa, "kappa": kappa}


def test_mask_confusion_on_one_hand_checked_mask():
    pred = np.array([[1, 1, 0], [0, 1, 0]])
    target = np.array([[1, 0, 0], [1, 1, 0]])
    # pixel by pixel: tp fp tn / fn tp tn  ->  tp=2 fp=1 fn=1 tn=2, 6 pixels
    metrics = MaskConfusion()
    metrics.update(pred, target)
    assert (metrics.tp, metrics.fp, metrics.fn, metrics.tn) == (2, 1, 1, 2)
    # po = 4/6; pe = ((tp+fp)(tp+fn) + (fn+tn)(fp+tn)) / 36 = (3*3 + 3*3) / 36 = 1/2
    # kappa = (2/3 - 1/2) / (1 - 1/2) = 1/3
    assert metrics.compute() == pytest.approx(_scores(2 / 3, 2 / 3, 2 / 3, 2 / 4, 4 / 6, 1 / 3))


def test_mask_confusion_accumulates_over_updates_and_respects_valid():
    metrics = MaskConfusion()
    metrics.update(np.array([[1, 1, 0], [0, 1, 0]]), np.array([[1, 0, 0], [1, 1, 0]]))  # tp2 fp1 fn1 tn2
    # A batch (1, 2, 2) of bool tensors with one pixel left out by `valid`:
    # (0,0) p1 t1 tp | (0,1) p0 t0 tn | (1,0) p1 t0 fp | (1,1) not counted  ->  tp1 fp1 fn0 tn1
    pred = torch.tensor([[[True, False], [True, True]]])
    target = torch.tensor([[[True, False], [False, False]]])
    valid = torch.tensor([[[1, 1], [1, 0]]], dtype=torch.uint8)
    metrics.update(pred, target, valid)
    assert (metrics.tp, metrics.fp, metrics.fn, metrics.tn) == (3, 2, 1, 3)
    # 9 pixels. po = 6/9; pe = ((3+2)(3+1) + (1+3)(2+3)) / 81 = 40/81
    # kappa = (54/81 - 40/81) / (1 - 40/81) = 14/41
    assert metrics.compute() == pytest.approx(_scores(3 / 5, 3 / 4, 6 / 9, 3 / 6, 6 / 9, 14 / 41))


def test_mask_confusion_defines_zero_over_zero_as_zero():
    metrics = MaskConfusion()
    assert metrics.compute() == _scores(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # nothing counted yet
    # Nothing changed and nothing predicted: tp=fp=fn=0, tn=8; chance agreement is 1, kappa 0/0.
    metrics.update(torch.zeros(2, 2, 2), torch.zeros(2, 2, 2))
    assert (metrics.tp, metrics.fp, metrics.fn, metrics.tn) == (0, 0, 0, 8)
    assert metrics.compute() == _scores(0.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    metrics.reset()
    metrics.update(np.eye(3, dtype=bool), np.eye(3, dtype=bool))
    assert metrics.compute() == _scores(1.0, 1.0, 1.0, 1.0, 1.0, 1.0)


def test_mask_confusion_counts_past_int32():
    mask = torch.ones(10_000, 10_000, dtype=torch.bool)
    metrics = MaskConfusion()
    for _ in range(22):  # 2.2e9 true positives > 2**31 - 1
        metrics.update(mask, mask)
    assert metrics.tp == 22 * 10**8 and metrics.fp == metrics.fn == metrics.tn == 0
    assert metrics.compute()["iou"] == 1.0


@pytest.mark.parametrize(
    ("pred", "target", "valid", "error"),
    [
        (np.zeros((2, 3)), np.zeros((3, 2)), None, "target is"),
        (np.zeros((2, 3)), np.zeros((2, 3)), np.ones((2, 2)), "valid is"),
        (np.zeros(3), np.zeros(3), None, r"\(B, H, W\) or \(H, W\)"),
        (np.full((2, 2), 0.5), np.zeros((2, 2)), None, "must be binary"),
        (np.full((2, 2), 2, dtype=np.uint8), np.zeros((2, 2)), None, "must be binary"),
    ],
)
def test_mask_confusion_rejects_bad_masks(pred, target, valid, error):
    with pytest.raises(ValueError, match=error):
        MaskConfusion().update(pred, target, valid)


# --- boxes -------------------------------------------------------------------------------------


def test_box_iou_is_torchvisions_on_random_boxes():
    torch.manual_seed(0)
    corners = torch.rand(20, 2, 2) * 100
    boxes = torch.cat([corners.min(1).values, corners.max(1).values], dim=1).double()  # x1 <= x2, y1 <= y2
    expected = torchvision_box_iou(boxes, boxes)
    for i in range(len(boxes)):
        for j in range(len(boxes)):
            assert box_iou(boxes[i].tolist(), boxes[j].tolist()) == pytest.approx(float(expected[i, j]), abs=1e-12)
    assert box_iou((5, 5, 0, 0), (5, 5, 0, 0)) == 0.0  # no area either side: 0/0 is 0, not NaN


# Two L shapes (non-convex, 4x4 squares less a 2x2 quarter), checked by hand:
#   L_A = [0,4]x[0,2] u [0,2]x[0,4], area 12; its convex hull cuts the corner (4,2)-(2,4), area 16 - 2 = 14.
#   L_B = [2,6]x[2,4] u [4,6]x[2,6], area 12; hull cuts (2,4)-(4,6), area 14.
# The shapes only touch along lines (exact IoU 0), the hulls share the triangle (2,2) (4,2) (2,4) of area 2:
# polygon IoU (of the hulls) = 2 / (14 + 14 - 2) = 1/13.
L_A = ((0, 0), (4, 0), (4, 2), (2, 2), (2, 4), (0, 4))
L_B = ((2, 2), (6, 2), (6, 6), (4, 6), (4, 4), (2, 4))


def test_polygon_iou_of_non_convex_polygons_is_that_of_their_hulls():
    assert Polygon(L_A).is_valid and Polygon(L_A).area == 12 and Polygon(L_A).convex_hull.area == 14
    assert Polygon(L_A).intersection(Polygon(L_B)).area == 0
    assert polygon_iou(L_A, L_B) == pytest.approx(1 / 13)
    assert polygon_iou(L_B[3:] + L_B[:3], tuple(reversed(L_A))) == pytest.approx(1 / 13)  # any start, either way
    # the hull of L_A contains the square [0,2]x[0,2] (area 4): 4 / 14
    assert polygon_iou(L_A, ((0, 0), (2, 0), (2, 2), (0, 2))) == pytest.approx(4 / 14)
    assert polygon_iou(L_A, ((0, 0), (2, 2), (4, 4))) == 0.0  # collinear: no area
