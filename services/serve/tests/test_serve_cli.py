"""`rsforge serve` is registered through the plugin hook, cheaply, with the documented options."""

import argparse
import subprocess
import sys
import textwrap

from rsforge.core.plugins import PluginManager
from rsforge.serve.cli import client_example, serve_command


def test_plugin_adds_serve_command_with_loopback_defaults():
    parser = argparse.ArgumentParser(prog="rsforge")
    PluginManager(only=["serve"]).add_commands(parser.add_subparsers())
    args = parser.parse_args(["serve", "some/model"])
    assert (args.model_dir, args.host, args.port) == ("some/model", "127.0.0.1", 8000)
    assert args.name is None and args.address is None
    assert args.func is serve_command
    args = parser.parse_args(["serve", "m", "--port", "9001", "--name", "cc", "--address", "auto"])
    assert (args.port, args.name, args.address) == (9001, "cc", "auto")


def test_discovering_the_plugin_imports_neither_ray_nor_torch():
    code = (
        "import argparse, sys\n"
        "from rsforge.core.plugins import PluginManager\n"
        "PluginManager(only=['serve']).add_commands(argparse.ArgumentParser().add_subparsers())\n"
        "print(sorted(m for m in ('ray', 'torch', 'fastapi') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_printed_client_example_is_valid_python():
    text = client_example("http://127.0.0.1:8000/v1", "tiny", 2)
    assert 'data_url("before.png")' in text and 'data_url("after.png")' in text
    compile(textwrap.dedent(text.split("\n", 1)[1]), "example", "exec")
    assert 'data_url("image.png")' in client_example("http://x/v1", "one", 1)
