"""`rsforge serve MODEL_DIR`: serve a saved model behind an OpenAI-compatible API until Ctrl-C."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
Serve a saved rsforge model with Ray Serve: POST /v1/chat/completions (OpenAI wire format, images
as base64 data URLs in `image_url` parts, in order before/after), GET /v1/models, GET /healthz.
Binds to 127.0.0.1 by default; pass --host 0.0.0.0 to expose it."""


def add_serve_command(cli) -> None:
    parser = cli.add_parser(
        "serve",
        help="serve a saved model behind an OpenAI-compatible /v1/chat/completions",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="directory written by save_pretrained")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP host to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port (default: %(default)s)")
    parser.add_argument("--name", help="model name clients pass as `model` (default: the recipe's name)")
    parser.add_argument(
        "--address",
        help="Ray cluster address to deploy on (default: a new local Ray instance, or $RAY_ADDRESS)",
    )
    parser.add_argument(
        "--num-cpus",
        type=float,
        default=0.0,
        help="CPUs reserved for the model replica (default: %(default)s)",
    )
    parser.set_defaults(func=serve_command)


def serve_command(args: argparse.Namespace) -> int:
    from rsforge.serve.app import run

    try:
        app = run(
            args.model_dir,
            host=args.host,
            port=args.port,
            name=args.name,
            address=args.address,
            num_cpus=args.num_cpus,
            blocking=False,
        )
    except RuntimeError as exc:
        # Serve's deployment failure; the replica's own traceback was already logged above.
        print(f"rsforge serve: error: {exc}", file=sys.stderr)
        return 1
    print(f"\nServing '{app.info['model']}' at {app.url} (Ctrl-C to stop)\n")
    print(client_example(app.url, app.info["model"], app.info["num_images"]))
    app.wait()
    return 0


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
