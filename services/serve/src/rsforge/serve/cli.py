"""`rsforge serve MODEL_DIR [MODEL_DIR ...]`: serve saved models behind an OpenAI-compatible API until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import sys

DESCRIPTION = """\
Serve saved rsforge models with Ray Serve: POST /v1/chat/completions (OpenAI wire format, plain or
streamed; images as base64 data URLs in `image_url` parts, in order before/after), POST
/v1/change/detect (change mask + statistics), GET /v1/models, /healthz, /metrics, and a web page
at /. Several model directories are served side by side, routed by the request's `model`.
Settings come from the flags or a YAML file (--config); flags win. Binds to 127.0.0.1 by default;
pass --host 0.0.0.0 to expose it. A new local Ray instance binds its own ports (metrics, dashboard,
GCS) to 127.0.0.1 too."""

# Read by Ray once, when it is imported. Off, a new local instance binds every port it opens (GCS,
# raylet, the metrics exporter, the dashboard) to 127.0.0.1 rather than all interfaces, where the
# metrics port would answer anyone on the network without auth. A cluster (--address) is untouched.
RAY_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def add_serve_command(cli) -> None:
    parser = cli.add_parser(
        "serve",
        help="serve saved models behind an OpenAI-compatible API, a change-mask API and a web page",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model_dirs", metavar="MODEL_DIR", nargs="*", help="directories written by save_pretrained")
    parser.add_argument("--config", metavar="YAML", help="serve settings file (see the README); flags override it")
    parser.add_argument("--host", help="HTTP host to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, help="HTTP port (default: 8000)")
    parser.add_argument("--name", help="model name clients pass as `model`, with one MODEL_DIR (default: the recipe's)")
    parser.add_argument(
        "--address", help="Ray cluster address to deploy on (default: a new local Ray instance, or $RAY_ADDRESS)"
    )
    parser.add_argument("--replicas", type=int, help="replicas per model (default: 1)")
    parser.add_argument("--min-replicas", type=int, help="autoscaling: fewest replicas per model")
    parser.add_argument("--max-replicas", type=int, help="autoscaling: most replicas per model")
    parser.add_argument("--num-cpus", type=float, help="CPUs reserved per model replica (default: 0)")
    parser.add_argument("--num-gpus", type=float, help="GPUs reserved per model replica (default: 0)")
    parser.add_argument("--max-batch-size", type=int, help="most requests in one batched generation (default: 16)")
    parser.add_argument("--batch-wait-ms", type=float, help="how long a batch waits to fill, in ms (default: 10)")
    parser.add_argument("--api-key-file", metavar="FILE",
                        help="require 'Authorization: Bearer KEY' with the KEY in FILE (default: $RSFORGE_API_KEY)")
    parser.add_argument("--api-key", help="the key itself; visible to every local user in `ps`, prefer the above")
    parser.add_argument(
        "--allow-image-host", action="append", metavar="HOST", dest="allow_image_hosts",
        help="fetch http(s) image URLs from HOST (repeatable; default: remote URLs are refused)",
    )
    parser.set_defaults(func=serve_command)


def config_from_args(args: argparse.Namespace):
    """The `ServeConfig` of the parsed flags on top of `--config`; a `ConfigError` names what is wrong."""
    from rsforge.serve.settings import ConfigError, load_config

    if args.name and len(args.model_dirs) != 1:
        raise ConfigError("--name needs exactly one MODEL_DIR; name several models in a --config file")
    models = [{"path": d, "name": args.name} for d in args.model_dirs] or None
    overrides = {
        key: getattr(args, key)
        for key in ("host", "port", "replicas", "min_replicas", "max_replicas", "num_cpus", "num_gpus",
                    "max_batch_size", "batch_wait_ms", "api_key", "api_key_file", "allow_image_hosts")
    }
    return load_config(args.config, models=models, **overrides).checked()


def serve_command(args: argparse.Namespace) -> int:
    from rsforge.serve.settings import ConfigError

    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"rsforge serve: error: {exc}", file=sys.stderr)
        return 2
    use_loopback_ray(args.address)
    from rsforge.serve.app import run

    try:
        app = run(config, address=args.address, blocking=False)
    except RuntimeError as exc:
        # Serve's deployment failure; the replica's own traceback was already logged above.
        print(f"rsforge serve: error: {exc}", file=sys.stderr)
        return 1
    names = ", ".join(f"'{m['model']}'" for m in app.models)
    print(f"\nServing {names} at {app.url} (web page: {app.url.removesuffix('/v1')}/; Ctrl-C to stop)\n")
    chat = next((m for m in app.models if m["chat"]), None)
    if chat is not None:
        print(client_example(app.url, chat["model"], chat["num_images"]))
    app.wait()
    return 0


def use_loopback_ray(address: str | None) -> None:
    """Before Ray is imported: a new local instance (no `address`, no $RAY_ADDRESS) binds to loopback."""
    if address is None and not os.environ.get("RAY_ADDRESS"):
        os.environ.setdefault(RAY_LOOPBACK_ENV, "0")


def client_example(url: str, model: str, num_images: int) -> str:
    names = ["before.png", "after.png"] if num_images == 2 else ["image.png"]
    images = "".join(
        f'        {{"type": "image_url", "image_url": {{"url": data_url("{n}")}}}},\n' for n in names
    )
    return f"""Example (pip install openai):

    import base64
    from openai import OpenAI

    def data_url(path):
        return "data:image/png;base64," + base64.b64encode(open(path, "rb").read()).decode()

    client = OpenAI(base_url="{url}", api_key="unused")
    content = [
        {{"type": "text", "text": "describe the changes"}},
{images}    ]
    reply = client.chat.completions.create(
        model="{model}", max_tokens=64, messages=[{{"role": "user", "content": content}}]
    )
    print(reply.choices[0].message.content)
"""
