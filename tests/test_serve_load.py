"""A bounded loopback load test: 500 chat requests at concurrency 32 to a tiny model, zero errors.

Prints p50/p99 latency, throughput and the batch sizes the server formed; asserts no timing (the
machine is shared), only that every request succeeded and that concurrent requests were batched."""

import concurrent.futures
import json
import time
import urllib.request

import pytest
from PIL import Image

from rsforge.serve.client import image_message
from rsforge.serve.prometheus import parse_prometheus, quantile

from .conftest import free_port

pytestmark = pytest.mark.ray

REQUESTS, CONCURRENCY, MAX_TOKENS = 500, 32, 4


@pytest.fixture(scope="module")
def server(ray_session, tiny_model_dir):
    from ray import serve

    from rsforge.serve.app import run
    from rsforge.serve.settings import ServeConfig

    config = ServeConfig(models=[{"path": str(tiny_model_dir), "name": "pair"}], port=free_port(),
                         max_batch_size=CONCURRENCY, batch_wait_ms=5)
    app = run(config, blocking=False)
    yield app
    serve.shutdown()


def test_500_requests_at_concurrency_32_without_errors(server):
    colors = [(i * 37 % 256, i * 91 % 256, i * 53 % 256) for i in range(16)]
    bodies = [
        json.dumps({"model": "pair", "max_tokens": MAX_TOKENS, "messages": [image_message(
            "describe the changes", Image.new("RGB", (32, 32), colors[i % 16]),
            Image.new("RGB", (32, 32), colors[(i + 5) % 16]))]}).encode()
        for i in range(REQUESTS)
    ]

    def send(body: bytes) -> tuple[int, float]:
        start = time.perf_counter()
        request = urllib.request.Request(server.url + "/chat/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                ok = isinstance(json.loads(response.read())["choices"][0]["message"]["content"], str)
                return (response.status if ok else 0), time.perf_counter() - start
        except urllib.error.HTTPError as exc:
            return exc.code, time.perf_counter() - start

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
        results = list(pool.map(send, bodies))
    wall = time.perf_counter() - start
    statuses = [status for status, _ in results]
    latencies = sorted(seconds for _, seconds in results)

    with urllib.request.urlopen(server.url.removesuffix("/v1") + "/metrics", timeout=30) as response:
        metrics = parse_prometheus(response.read().decode())
    batches = metrics["rsforge_batch_size_count"]
    mean_batch = metrics["rsforge_batch_size_sum"] / batches
    print(
        f"\nload: {REQUESTS} requests, concurrency {CONCURRENCY}, max_tokens {MAX_TOKENS}: "
        f"p50 {quantile(latencies, 0.5) * 1000:.0f} ms, p99 {quantile(latencies, 0.99) * 1000:.0f} ms, "
        f"{REQUESTS / wall:.1f} requests/s, mean batch size {mean_batch:.1f} (per request), {wall:.1f} s"
    )
    assert statuses == [200] * REQUESTS, {s: statuses.count(s) for s in set(statuses)}
    assert metrics['rsforge_requests_total{route="/v1/chat/completions",status="200"}'] == REQUESTS
    assert mean_batch > 1, "32 concurrent clients should have been batched"
