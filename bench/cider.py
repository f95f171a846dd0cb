"""CIDEr-D: rsforge's vectorised `CiderD` reward against pycocoevalcap's `Cider` on the same corpus.

Synthetic change captions (the project's caption generator, 3-5 references per image pair, the
candidate another description of a random pair). Rows: `mode: batch df`, document frequencies from the
batch (no fit, what `Cider().compute_score` does), and `mode: fitted` on the references once with
repeated calls (SCST: the references' tf-idf vectors are cached, only candidates are counted). Both
are checked equal to pycocoevalcap per sample (max abs difference reported). Each round times
pycocoevalcap and both modes back to back (`pairs.py`); a mode's speedup is per round.

    python bench/cider.py [--quick] [--rounds N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from pairs import describe, interleave, paired, ratio, timed
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


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 candidates, three rounds (for the test suite)")
    parser.add_argument("--rounds", type=int, help="timed rounds after a warm-up (default 3 quick, 5 full)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    size, rounds = (200, 3) if args.quick else (5000, 5)
    rounds = args.rounds or rounds
    candidates, references = corpus(size)
    gts = {i: refs for i, refs in enumerate(references)}
    res = {i: [c] for i, c in enumerate(candidates)}
    batch_reward = CiderD(CiderDConfig(name="cider_d"))
    fitted = CiderD(CiderDConfig(name="cider_d"))
    fit_start = time.perf_counter()
    fitted.fit(references)
    fit_s = time.perf_counter() - fit_start
    # Checked once, outside the timing: pycocoevalcap on this corpus uses the same corpus df, so the fitted
    # scores must equal it too.
    coco_scores = np.asarray(Cider().compute_score(gts, res)[1])
    checks = {"batch": batch_reward(candidates, references).numpy(), "fitted": fitted(candidates, references).numpy()}
    # The fitted call takes milliseconds: several calls a measurement, so timer and scheduler noise stay small.
    seconds = interleave({
        "pycocoevalcap": timed(lambda: Cider().compute_score(gts, res)),
        "batch": timed(lambda: batch_reward(candidates, references), calls=2),
        "fitted": timed(lambda: fitted(candidates, references), calls=5),
    }, rounds, desc=None if args.quick else "cider")
    rows = []
    for mode, key in (("batch df", "batch"), ("fitted", "fitted")):
        spread = paired(seconds["pycocoevalcap"], seconds[key])
        rows.append({"mode": mode, "candidates": size, "pycocoevalcap_s": seconds["pycocoevalcap"],
                     "rsforge_s": seconds[key], **({"fit_s": fit_s} if key == "fitted" else {}),
                     "max_abs_diff": float(np.abs(checks[key] - coco_scores).max()), **ratio("speedup", spread)})
        print(f"{mode:>8}: {statistics.median(seconds[key]) * 1e3:7.1f} ms, pycocoevalcap "
              f"{statistics.median(seconds['pycocoevalcap']) * 1e3:.0f} ms; speedup {describe(spread)}; "
              f"max |diff| {rows[-1]['max_abs_diff']:.1e}")
    result = {"benchmark": "cider", "quick": args.quick, "rounds": rounds, "rows": rows}
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
