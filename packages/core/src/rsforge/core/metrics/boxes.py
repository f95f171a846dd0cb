"""Box metrics: axis-aligned IoU (visual grounding) and exact polygon IoU (oriented boxes).

Pure Python/numpy. Boxes are `(x1, y1, x2, y2)` and polygons sequences of `(x, y)` points, in
pixels of the first image (the rsforge convention; see `rsforge.core.data.schema`).

Polygon IoU is exact for convex polygons: each polygon is replaced by its convex hull (so a quad
whose corners are listed in a crossing order is still the box it means), the intersection is
clipped with Sutherland-Hodgman, and areas come from the shoelace formula.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Box = Sequence[float]
Point = tuple[float, float]
Polygon = Sequence[Point]

_EPS = 1e-12


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two `(x1, y1, x2, y2)` boxes (x1 <= x2, y1 <= y2); 0.0 when both
    are empty."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    return _ratio(inter, area_a + area_b - inter)


def polygon_area(polygon: Polygon) -> float:
    """Signed area (shoelace): positive when the points run counter-clockwise in x-right, y-up axes."""
    n = len(polygon)
    return 0.5 * sum(polygon[i][0] * polygon[(i + 1) % n][1] - polygon[(i + 1) % n][0] * polygon[i][1]
                     for i in range(n))  # fmt: skip


def convex_hull(points: Sequence[Point]) -> list[Point]:
    """Convex hull, counter-clockwise (positive signed area), by Andrew's monotone chain."""
    pts = sorted({(float(x), float(y)) for x, y in points})
    if len(pts) <= 2:
        return pts

    def cross(o: Point, a: Point, b: Point) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[Point] = []
    upper: list[Point] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return lower[:-1] + upper[:-1]


def _clip(subject: list[Point], clipper: list[Point]) -> list[Point]:
    """Sutherland-Hodgman: `subject` clipped to the convex, counter-clockwise `clipper`."""
    out = subject
    for i in range(len(clipper)):
        if not out:
            break
        (ax, ay), (bx, by) = clipper[i], clipper[(i + 1) % len(clipper)]

        def side(p: Point, ax=ax, ay=ay, bx=bx, by=by) -> float:  # > 0: left of a->b, i.e. inside
            return (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax)

        points, out = out, []
        for j in range(len(points)):
            p, q = points[j], points[(j + 1) % len(points)]
            sp, sq = side(p), side(q)
            if sp >= 0:
                out.append(p)
            if (sp >= 0) != (sq >= 0) and abs(sp - sq) > _EPS:
                t = sp / (sp - sq)
                out.append((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
    return out


def polygon_iou(a: Polygon, b: Polygon) -> float:
    """Exact IoU of the convex hulls of two polygons; 0.0 when either is degenerate (no area)."""
    ha, hb = convex_hull(a), convex_hull(b)
    if len(ha) < 3 or len(hb) < 3:
        return 0.0
    area_a, area_b = polygon_area(ha), polygon_area(hb)
    clipped = _clip(ha, hb)
    inter = max(0.0, polygon_area(clipped)) if len(clipped) >= 3 else 0.0
    return _ratio(inter, area_a + area_b - inter)


def grounding_metrics(
    predictions: Sequence[Box | None], references: Sequence[Sequence[Box]], *, threshold: float = 0.5
) -> dict[str, float]:
    """Visual grounding, one predicted box per sample: `acc@0.5` (IoU >= threshold with a reference
    box, the best one where a sample has several) and `mean_iou`. A malformed answer has IoU 0."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    ious = [0.0 if p is None else max((box_iou(p, r) for r in refs), default=0.0)
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
    pairs = sorted(((polygon_iou(p, r), i, j) for i, p in enumerate(predicted) for j, r in enumerate(reference)),
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
