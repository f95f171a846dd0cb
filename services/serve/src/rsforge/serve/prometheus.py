"""Request metrics of the ingress in Prometheus' text exposition format (served at `GET /metrics`).

Kept in-process and dependency-free: one ingress replica counts what it answers. Latency is
exported twice: as a histogram (aggregatable across replicas by Prometheus) and as a summary with
p50/p90/p99 over the most recent requests (readable as is, e.g. by the load test).
"""

from __future__ import annotations

import math
import threading
from collections import Counter, deque

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
QUANTILES = (0.5, 0.9, 0.99)
RECENT = 10_000  # latencies kept for the quantiles: bounded memory, recent behaviour


def quantile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank quantile of ascending values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[rank]


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str) -> list[str]:
        sep = "," if labels else ""
        pairs = zip(self.buckets, self.counts, strict=True)
        out = [f'{name}_bucket{{{labels}{sep}le="{_num(b)}"}} {c}' for b, c in pairs]
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        braces = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{braces} {_num(self.sum)}", f"{name}_count{braces} {self.count}"]
        return out


class Metrics:
    """Counts by (route, status), latency per route, and the batch size each generation ran in."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.latency: dict[str, _Histogram] = {}
        self.recent: dict[str, deque[float]] = {}
        self.batch_sizes = _Histogram(BATCH_BUCKETS)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(route, status)] += 1
            self.latency.setdefault(route, _Histogram(LATENCY_BUCKETS)).observe(seconds)
            self.recent.setdefault(route, deque(maxlen=RECENT)).append(seconds)

    def observe_batch(self, size: int) -> None:
        """Once per answered generation request: the number of requests in the batch it ran in."""
        with self._lock:
            self.batch_sizes.observe(size)

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP rsforge_requests_total Requests answered, by route and HTTP status.",
                "# TYPE rsforge_requests_total counter",
            ]
            lines += [
                f'rsforge_requests_total{{route="{route}",status="{status}"}} {count}'
                for (route, status), count in sorted(self.requests.items())
            ]
            lines += [
                "# HELP rsforge_request_duration_seconds Time to the response (first byte for streams).",
                "# TYPE rsforge_request_duration_seconds histogram",
            ]
            for route, hist in sorted(self.latency.items()):
                lines += hist.lines("rsforge_request_duration_seconds", f'route="{route}"')
            lines += [
                f"# HELP rsforge_request_latency_seconds Latency quantiles over the last {RECENT} requests.",
                "# TYPE rsforge_request_latency_seconds summary",
            ]
            for route, recent in sorted(self.recent.items()):
                values = sorted(recent)
                lines += [
                    f'rsforge_request_latency_seconds{{route="{route}",quantile="{q}"}} {_num(quantile(values, q))}'
                    for q in QUANTILES
                ]
                lines += [
                    f'rsforge_request_latency_seconds_sum{{route="{route}"}} {_num(sum(values))}',
                    f'rsforge_request_latency_seconds_count{{route="{route}"}} {len(values)}',
                ]
            lines += [
                "# HELP rsforge_batch_size Requests in the batched generation each chat request ran in.",
                "# TYPE rsforge_batch_size histogram",
                *self.batch_sizes.lines("rsforge_batch_size", ""),
            ]
        return "\n".join(lines) + "\n"


def _num(value: float) -> str:
    """Integers without a trailing `.0` (bucket bounds read `le="5"`), other values in full precision."""
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def parse_prometheus(text: str) -> dict[str, float]:
    """`{'name{labels}': value}` of exposition text (comments skipped): for tests and the load test."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out
