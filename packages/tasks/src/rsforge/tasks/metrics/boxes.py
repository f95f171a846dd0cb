"""Box metrics: axis-aligned IoU (visual grounding) and exact polygon IoU (oriented boxes).

Boxes are `(x1, y1, x2, y2)` and polygons sequences of `(x, y)` points, in pixels of the first image
(the rsforge convention; see `rsforge.core.sample`). Box IoU is torchvision's `box_iou`; polygon
areas and intersections are shapely's.

Polygon IoU is the exact IoU of the polygons' convex hulls: a quad whose corners are listed in a
crossing order (a "bow tie", which shapely calls invalid) is still the box it means, and the score
does not depend on the order of the points. `shapely.make_valid` or `.buffer(0)` would not do: they
turn the bow tie into two triangles (half the box) or keep one of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely
import torch
from torchvision import ops

Box = Sequence[float]
Point = tuple[float, float]
Polygon = Sequence[Point]


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def _box_ious(a: Sequence[Box], b: Sequence[Box]) -> np.ndarray:
    """IoU of every box of `a` with every box of `b`, (len(a), len(b)); 0.0 where both are empty
    (and for a box with x2 < x1 or y2 < y1, which has no area)."""
    ta = torch.tensor([list(box) for box in a], dtype=torch.float64).reshape(-1, 4)
    tb = torch.tensor([list(box) for box in b], dtype=torch.float64).reshape(-1, 4)
    return ops.box_iou(ta, tb).nan_to_num(0.0).clamp(min=0.0).numpy()


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two `(x1, y1, x2, y2)` boxes (x1 <= x2, y1 <= y2); 0.0 when both
    are empty."""
    return float(_box_ious([a], [b])[0, 0])


def _hulls(polygons: Sequence[Polygon]) -> np.ndarray:
    """Each polygon's convex hull: a shapely Polygon, or a LineString / Point (no area) when its points
    are collinear or fewer than three."""
    hulls = [shapely.MultiPoint([(float(x), float(y)) for x, y in p]).convex_hull for p in polygons]
    return np.array(hulls, dtype=object)


def _hull_ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every hull of `a` with every hull of `b`, (len(a), len(b)); 0.0 where either has no area."""
    area_a, area_b = shapely.area(a)[:, None], shapely.area(b)[None, :]
    inter = shapely.area(shapely.intersection(a[:, None], b[None, :]))
    with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 where both have no area
        iou = inter / (area_a + area_b - inter)
    return np.where((area_a > 0) & (area_b > 0), iou, 0.0)


def polygon_iou(a: Polygon, b: Polygon) -> float:
    """Exact IoU of the convex hulls of two polygons; 0.0 when either is degenerate (no area)."""
    return float(_hull_ious(_hulls([a]), _hulls([b]))[0, 0])


def grounding_metrics(
    predictions: Sequence[Box | None], references: Sequence[Sequence[Box]], *, threshold: float = 0.5
) -> dict[str, float]:
    """Visual grounding, one predicted box per sample: `acc@0.5` (IoU >= threshold with a reference
    box, the best one where a sample has several) and `mean_iou`. A malformed answer has IoU 0."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    ious = [0.0 if p is None or not refs else float(_box_ious([p], refs).max())
            for p, refs in zip(predictions, references, strict=True)]  # fmt: skip
    n = len(ious)
    return {f"acc@{threshold:g}": _ratio(sum(i >= threshold for i in ious), n),
            "mean_iou": float(np.mean(ious)) if ious else 0.0, "n": n,
            "malformed": sum(p is None for p in predictions)}  # fmt: skip


def match_polygons(
    predicted: Sequence[Polygon], reference: Sequence[Polygon], *, threshold: float = 0.5
) -> tuple[int, list[float]]:
    """Greedy one-to-one matching by IoU, highest first: (true positives at `threshold`, for each
    reference the IoU of the prediction matched to it, 0.0 when none)."""
    ious = _hull_ious(_hulls(predicted), _hulls(reference))
    pairs = sorted(((float(ious[i, j]), i, j) for i in range(len(predicted)) for j in range(len(reference))),
                   reverse=True)  # fmt: skip
    used_p: set[int] = set()
    best = [0.0] * len(reference)
    matched: set[int] = set()
    for iou, i, j in pairs:
        if iou <= 0 or i in used_p or j in matched:
            continue
        used_p.add(i)
        matched.add(j)
        best[j] = iou
    return sum(iou >= threshold for iou in best), best


def polygon_detection_metrics(
    predictions: Sequence[Sequence[Polygon] | None], references: Sequence[Sequence[Polygon]], *, threshold: float = 0.5
) -> dict[str, float]:
    """Oriented boxes: precision/recall/F1 at IoU >= `threshold` over the split (greedy one-to-one
    matching per sample), `mean_iou` of the reference polygons' matches (0 unmatched), and `accuracy`:
    samples whose every prediction and reference are matched. A malformed answer predicts nothing."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    tp = n_pred = n_ref = exact = malformed = 0
    ious: list[float] = []
    for pred, ref in zip(predictions, references, strict=True):
        if pred is None:
            malformed += 1
            ious += [0.0] * len(ref)
            n_ref += len(ref)
            continue
        hits, best = match_polygons(pred, ref, threshold=threshold)
        tp, n_pred, n_ref = tp + hits, n_pred + len(pred), n_ref + len(ref)
        ious += best
        exact += hits == len(pred) == len(ref)
    n = len(references)
    return {"precision": _ratio(tp, n_pred), "recall": _ratio(tp, n_ref), "f1": _ratio(2 * tp, n_pred + n_ref),
            "mean_iou": float(np.mean(ious)) if ious else 0.0, "accuracy": _ratio(exact, n), "n": n,
            "malformed": malformed}  # fmt: skip
