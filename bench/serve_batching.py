"""Serving throughput with dynamic batching against without, over HTTP on loopback.

The tiny test model is served twice in one Ray Serve app: once with `max_batch_size=1` (every
request runs its own `generate`), once with batching (`max_batch_size` = the highest concurrency,
`batch_wait_ms` 20). Clients send the same chat requests at concurrency 1, 8 and 32; each row gives
both throughputs and `ratio_throughput` = batched / unbatched, measured twice: `path: http` end to
end through the HTTP proxy and the ingress (what a client sees), `path: handle` through a
DeploymentHandle straight to the model replica (the batching itself; on a small CPU machine the HTTP
path's per-request overhead, not the model, caps the end-to-end rate). At concurrency 1 the ratio
shows what the batch wait costs; above it, what batching buys. Each row is rounds of the two
deployments back to back, in turns first, never at once (`pairs.py`); each measurement times at
least three waves of requests (and 16 requests) after one untimed wave. Starts a local Ray instance
unless one is running (run it under `flock /tmp/rsforge-ray.lock` on a shared machine). `--quick`
runs a tiny configuration (used by the test suite so it cannot rot).

    python bench/serve_batching.py [--quick] [--rounds N] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml
from pairs import describe, interleave, paired, ratio
from PIL import Image
from tqdm import tqdm

from rsforge.core.model import RSForgeModel
from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import parse_recipe
from rsforge.serve.client import image_message

ROOT = Path(__file__).resolve().parents[1]
WAIT_MS = 20  # long enough for a full batch of clients to come back after their last answer
CORPUS = ["describe the changes between the two images", "a new building was built in the top left",
          "there is no change", "some trees were cut down"]


def untrained_model(recipe: str, directory: Path) -> tuple[Path, int]:
    """The recipe's model with seeded random weights, saved; and its image size."""
    plugins = PluginManager()
    raw = yaml.safe_load((ROOT / "recipes" / recipe).read_text())
    raw.pop("data")
    torch.manual_seed(0)
    recipe = parse_recipe(raw, plugins.registry).prepared(CORPUS)
    saved = RSForgeModel.from_recipe(recipe, plugins).save_pretrained(directory)
    return saved, raw["encoder"]["image_size"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bodies(model: str, count: int, max_tokens: int, size: int) -> list[bytes]:
    colors = [(i * 37 % 256, i * 91 % 256, i * 53 % 256) for i in range(16)]
    return [
        json.dumps({"model": model, "max_tokens": max_tokens, "messages": [image_message(
            "describe the changes", Image.new("RGB", (size, size), colors[i % 16]),
            Image.new("RGB", (size, size), colors[(i + 7) % 16]))]}).encode()
        for i in range(count)
    ]


def throughput(url: str, payloads: list[bytes], concurrency: int) -> float:
    """Requests per second answered at `concurrency`; any failed request is an error. The clients are
    coroutines on one event loop, not threads: on a small machine a threaded client's own CPU would
    be measured along with the server."""
    import aiohttp

    async def measure() -> float:
        gate = asyncio.Semaphore(concurrency)
        limits = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=limits, timeout=aiohttp.ClientTimeout(total=120)) as session:

            async def send(body: bytes) -> None:
                async with gate, session.post(url, data=body, headers={"Content-Type": "application/json"}) as reply:
                    reply.raise_for_status()
                    await reply.read()

            await asyncio.gather(*(send(b) for b in payloads[:concurrency]))  # warm-up: connections, a batch
            start = time.perf_counter()
            await asyncio.gather(*(send(b) for b in payloads))
            return len(payloads) / (time.perf_counter() - start)

    return asyncio.run(measure())


def handle_throughput(handle, requests: list, concurrency: int) -> float:
    """Requests per second through a DeploymentHandle straight to the model replica: batching itself,
    without the HTTP proxy, JSON and image decoding in front of it."""

    async def measure() -> float:
        gate = asyncio.Semaphore(concurrency)

        async def one(request) -> None:
            async with gate:
                outcome = await handle.chat.remote(request)
                if "error" in outcome:
                    raise RuntimeError(outcome["error"]["message"])

        await asyncio.gather(*(one(r) for r in requests[:concurrency]))  # warm-up: a batch
        start = time.perf_counter()
        await asyncio.gather(*(one(r) for r in requests))
        return len(requests) / (time.perf_counter() - start)

    return asyncio.run(measure())


def chat_requests(count: int, max_tokens: int, size: int) -> list:
    from rsforge.core.sample import Turn
    from rsforge.serve.openai_requests import ChatRequest

    generator = torch.Generator().manual_seed(0)
    return [
        ChatRequest("tiny", [Turn("user", "describe the changes")], torch.rand(2, 3, size, size, generator=generator),
                    max_tokens, 0.0, 1.0)
        for _ in range(count)
    ]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny configuration, seconds")
    parser.add_argument("--rounds", type=int, help="timed rounds per row (default 2 quick, 4 full)")
    parser.add_argument("--json", metavar="OUT", help="also write the result as JSON")
    args = parser.parse_args(argv)

    import ray
    from ray import serve

    from rsforge.core.atomic import atomic_write_text
    from rsforge.serve.app import run
    from rsforge.serve.settings import ServeConfig

    levels = [1, 4] if args.quick else [1, 8, 32]
    rounds = args.rounds or (2 if args.quick else 4)
    max_tokens = 2 if args.quick else 16

    def requests_at(concurrency: int) -> int:
        """Timed requests a measurement sends: at least three waves of the concurrency, and 16 (quick: 4)."""
        return max(4 if args.quick else 16, 3 * concurrency)

    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(num_cpus=4, log_to_driver=False, configure_logging=False)
    rows, lines = [], []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            model, size = untrained_model("tiny.yaml", Path(tmp) / "model")
            # One app, the model twice: unbatched and batched, so both share one Serve start-up.
            config = ServeConfig(port=free_port(), models=[
                {"path": str(model), "name": "unbatched", "max_batch_size": 1, "batch_wait_ms": 0},
                {"path": str(model), "name": "batched", "max_batch_size": max(levels), "batch_wait_ms": WAIT_MS},
            ])
            app = run(config, blocking=False)
            url = app.url + "/chat/completions"
            most = requests_at(max(levels))
            direct = chat_requests(most, max_tokens, size)
            payloads = {name: bodies(name, most, max_tokens, size) for name in ("unbatched", "batched")}
            handles = {name: app.model_handle(name) for name in ("unbatched", "batched")}

            def measurement(path: str, name: str, concurrency: int):
                n = requests_at(concurrency)
                if path == "http":
                    return lambda: throughput(url, payloads[name][:n], concurrency)
                return lambda: handle_throughput(handles[name], direct[:n], concurrency)

            cases = [(path, c) for path in ("http", "handle") for c in levels]
            for path, c in tqdm(cases, desc="serve batching", disable=args.quick):
                # Each measurement warms its connections and batches with a wave first: no warm-up round.
                rps = interleave({name: measurement(path, name, c) for name in handles}, rounds, warmup=0)
                spread = paired(rps["batched"], rps["unbatched"])
                rows.append({"path": path, "concurrency": c, "requests": requests_at(c),
                             "unbatched_rps": statistics.median(rps["unbatched"]),
                             "batched_rps": statistics.median(rps["batched"]), **ratio("throughput", spread)})
                lines.append(f"{path:>6} {c:>11} {rows[-1]['unbatched_rps']:>16.1f} {rows[-1]['batched_rps']:>14.1f}  "
                             f"{describe(spread)}")
            app.stop()
    finally:
        serve.shutdown()
        if started_ray:
            ray.shutdown()
    result = {"benchmark": "serve_batching", "quick": args.quick, "rounds": rounds, "max_tokens": max_tokens,
              "max_batch_size": max(levels), "rows": rows}
    print(f"{'path':>6} {'concurrency':>11} {'unbatched req/s':>16} {'batched req/s':>14}  batched / unbatched")
    print("\n".join(lines))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
