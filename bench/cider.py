"""CIDEr-D: rsforge's vectorised `CiderD` reward against pycocoevalcap's `Cider` on the same corpus.

Synthetic change captions (the project's caption generator, 3-5 references per image pair, the
candidate another description of a random pair). Rows: document frequencies from the batch (no fit,
what `Cider().compute_score` does), and fitted on the references once with repeated calls (SCST: the
references' tf-idf vectors are cached, only candidates are counted). Both are checked equal to
pycocoevalcap per sample (max abs difference reported). Times are the best of `repeats` runs.

    python bench/cider.py [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from pycocoevalcap.cider.cider import Cider
from tqdm import tqdm

from rsforge.core.atomic import atomic_write_text
from rsforge.datasets.synth.language import ChangeEvent, change_captions
from rsforge.rewards.cider import CiderD
from rsforge.rewards.configs import CiderDConfig

KINDS = ("built", "demolished", "trees")


def corpus(size: int, seed: int = 0) -> tuple[list[str], list[list[str]]]:
    rng = np.random.default_rng(seed)

    def events() -> list[ChangeEvent]:
        return [ChangeEvent(KINDS[int(rng.integers(3))], int(rng.integers(1, 4)),
                       [int(c) for c in rng.choice(9, int(rng.integers(1, 3)), replace=False)])
                for _ in range(int(rng.integers(0, 3)))]

    references = [change_captions(rng, events()) for _ in tqdm(range(size), desc="captions", leave=False)]
    candidates = [change_captions(rng, events())[0] for _ in range(size)]
    return candidates, references


def best_time(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~200 candidates, one repeat (for the test suite)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    size, repeats = (200, 1) if args.quick else (5000, 3)
    candidates, references = corpus(size)
    gts = {i: refs for i, refs in enumerate(references)}
    res = {i: [c] for i, c in enumerate(candidates)}
    coco_s, (_, coco_scores) = best_time(lambda: Cider().compute_score(gts, res), repeats)
    coco_scores = np.asarray(coco_scores)

    batch_reward = CiderD(CiderDConfig(name="cider_d"))
    batch_s, batch_scores = best_time(lambda: batch_reward(candidates, references), repeats)
    fitted = CiderD(CiderDConfig(name="cider_d"))
    fit_s, _ = best_time(lambda: fitted.fit(references), 1)
    # pycocoevalcap on this corpus uses the same corpus df, so the fitted scores must equal it too.
    cached_s, cached_scores = best_time(lambda: fitted(candidates, references), repeats + 2)
    rows = [
        {"mode": "batch df (no fit)", "candidates": size, "pycocoevalcap_s": coco_s, "rsforge_s": batch_s,
         "max_abs_diff": float(np.abs(batch_scores.numpy() - coco_scores).max()), "ratio_speedup": coco_s / batch_s},
        {"mode": "fitted, references cached", "candidates": size, "pycocoevalcap_s": coco_s, "rsforge_s": cached_s,
         "fit_s": fit_s, "max_abs_diff": float(np.abs(cached_scores.numpy() - coco_scores).max()),
         "ratio_speedup": coco_s / cached_s},
    ]
    print(f"{size} candidates; pycocoevalcap Cider {coco_s * 1e3:.0f} ms")
    for row in rows:
        print(f"{row['mode']:>28}: {row['rsforge_s'] * 1e3:7.1f} ms  {row['ratio_speedup']:6.1f}x  "
              f"max |diff| {row['max_abs_diff']:.1e}")
    result = {"benchmark": "cider", "quick": args.quick, "rows": rows}
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
