"""Interleaved A/B measurement, shared by the benchmarks.

On a shared machine the speed drifts during a run: a baseline timed once at the start and a candidate
timed minutes later measure the drift as much as rsforge. So every benchmark runs its variants (the
baseline and one or more candidates) in rounds, each round every variant once, back to back, and takes
one ratio per round from measurements seconds apart. The order flips every round (A B, B A, A B ...),
so neither side always runs first, on a cache the other warmed or a core the other heated. Untimed
warm-up rounds come first (imports, allocators, kernels, file caches).

A ratio is reported as the median over its pairs with the interquartile range and the min-max, and
the number of pairs: `ratio(what, spread)` gives the row fields `ratio_<what>` (the median) and
`spread_<what>` ({q1, q3, min, max, pairs}), which `run_all.py` reads.

    from pairs import interleave, paired, ratio, timed
    times = interleave({"baseline": timed(base), "rsforge": timed(ours)}, rounds=9)
    row.update(ratio("speedup", paired(times["baseline"], times["rsforge"])))
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator, Sequence

from tqdm import tqdm

SPREAD_KEYS = ("q1", "q3", "min", "max", "pairs")


def timed(fn: Callable[[], object], calls: int = 1) -> Callable[[], float]:
    """A measurement of `fn`: its mean wall time over `calls` calls (several calls for one that takes
    milliseconds, where one call would be mostly timer and scheduler noise)."""

    def measure() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - start) / calls

    return measure


@contextlib.contextmanager
def torch_threads(count: int = 1) -> Iterator[None]:
    """Torch on `count` threads for the block, restored after. Benches whose baseline and candidate both
    run torch in this process use one thread: when another process takes a core, a two-thread kernel
    waits at every barrier for its descheduled thread, and the times jump several-fold from one call to
    the next (seen on the shared 2-core machines), which no pairing evens out; one thread just gets its
    share of the CPU, which moves slowly and touches both sides of a pair alike."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def interleave(variants: dict[str, Callable[[], float]], rounds: int, *, warmup: int = 1,
               desc: str | None = None) -> dict[str, list[float]]:
    """Each variant's measurements, one per round: `warmup` untimed rounds, then `rounds` rounds that
    run every variant once, in the given order on even rounds and reversed on odd ones. A measurement
    is whatever the variant returns (seconds, samples/s, ...)."""
    if rounds < 1:
        raise ValueError(f"need at least one round, got {rounds}")
    order = list(variants)
    for _ in range(warmup):
        for name in order:
            variants[name]()
    measured: dict[str, list[float]] = {name: [] for name in order}
    for i in tqdm(range(rounds), desc=desc, unit="round", leave=False, disable=desc is None):
        for name in order if i % 2 == 0 else order[::-1]:
            measured[name].append(float(variants[name]()))
    return measured


def summary(ratios: Sequence[float]) -> dict:
    """Median, quartiles (inclusive: they lie within min-max) and min-max of per-pair ratios."""
    if not ratios:
        raise ValueError("no pairs to summarise")
    values = sorted(float(r) for r in ratios)
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    return {"median": statistics.median(values), "q1": q1, "q3": q3, "min": values[0], "max": values[-1],
            "pairs": len(values)}


def paired(numerator: Sequence[float], denominator: Sequence[float]) -> dict:
    """`summary` of numerator[i] / denominator[i], the two measured in the same round."""
    if len(numerator) != len(denominator):
        raise ValueError(f"{len(numerator)} against {len(denominator)} measurements: not pairs")
    return summary([n / d for n, d in zip(numerator, denominator, strict=True)])


def ratio(what: str, spread: dict) -> dict:
    """Row fields for one ratio: `ratio_<what>` (the median) and `spread_<what>` (quartiles, min-max, pairs)."""
    return {f"ratio_{what}": spread["median"], f"spread_{what}": {key: spread[key] for key in SPREAD_KEYS}}


def describe(spread: dict) -> str:
    """`1.02 (IQR 0.98-1.05, range 0.91-1.10, 9 pairs)`, for a bench's printout."""
    return (f"{spread['median']:.3g} (IQR {spread['q1']:.3g}-{spread['q3']:.3g}, "
            f"range {spread['min']:.3g}-{spread['max']:.3g}, {spread['pairs']} pairs)")
