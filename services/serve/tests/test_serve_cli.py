"""`rsforge serve` is registered through the plugin hook, cheaply, with the documented options."""

import argparse
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rsforge.core.model import RECIPE_FILE
from rsforge.core.plugins import PluginManager
from rsforge.serve.cli import client_example, config_from_args, serve_command
from rsforge.serve.settings import ConfigError


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rsforge")
    PluginManager(only=["serve"]).add_commands(parser.add_subparsers())
    return parser.parse_args(["serve", *argv])


def model_dir(path: Path, name: str = "m") -> Path:
    path.mkdir()
    (path / RECIPE_FILE).write_text(f"name: {name}\n")
    return path


def test_plugin_adds_serve_command_with_loopback_defaults(tmp_path):
    args = parse("some/model")
    assert args.model_dirs == ["some/model"] and args.func is serve_command
    a = model_dir(tmp_path / "a")
    config = config_from_args(parse(str(a)))
    assert (config.host, config.port, config.replicas, config.num_cpus, config.num_gpus) == ("127.0.0.1", 8000, 1, 0, 0)
    assert config.api_key is None and config.allow_image_hosts == [] and config.autoscaling is None


def test_flags_override_the_config_file(tmp_path, monkeypatch):
    a, b = model_dir(tmp_path / "a"), model_dir(tmp_path / "b")
    file = tmp_path / "serve.yaml"
    file.write_text(f"models: [{a}, {{path: {b}, name: bee, max_batch_size: 2}}]\nport: 9000\nmax_batch_size: 4\n"
                    "num_gpus: 1\n")
    config = config_from_args(parse("--config", str(file), "--max-batch-size", "32", "--batch-wait-ms", "2",
                                    "--allow-image-host", "h1", "--allow-image-host", "h2"))
    assert [(m.path, m.name, m.max_batch_size) for m in config.models] == [(str(a), None, None), (str(b), "bee", 2)]
    assert (config.port, config.max_batch_size, config.batch_wait_ms, config.num_gpus) == (9000, 32, 2, 1)
    assert config.allow_image_hosts == ["h1", "h2"]
    # MODEL_DIR arguments replace the file's models; the key may come from the environment.
    monkeypatch.setenv("RSFORGE_API_KEY", "from-env")
    config = config_from_args(parse(str(a), "--config", str(file), "--min-replicas", "1", "--max-replicas", "3",
                                    "--name", "solo"))
    assert [(m.path, m.name) for m in config.models] == [(str(a), "solo")]
    assert config.api_key == "from-env"
    assert config.autoscaling == {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 16.0}


@pytest.mark.parametrize(
    ("yaml_text", "argv", "words"),
    [
        ("replicas: 0\n", [], "serve.yaml: replicas: Input should be greater than or equal to 1"),
        ("replica: 2\n", [], "serve.yaml: replica: unknown key"),
        ("port: http\n", [], "serve.yaml: port: Input should be a valid integer"),
        ("models: [{path: x, nam: y}]\n", [], "serve.yaml: models.0.nam: unknown key"),
        ("models: [{path: x, max_batch_size: 0}]\n", [], "serve.yaml: models.0.max_batch_size: Input should be"),
        ("- 1\n", [], "the top level must be a mapping"),
        ("port: [\n", [], "not valid YAML"),
        ("min_replicas: 1\n", [], "give both min_replicas and max_replicas"),
        ("{}\n", ["--min-replicas", "3", "--max-replicas", "2"], "min_replicas (3) is above max_replicas (2)"),
        ("{}\n", [], "no model to serve"),
        ("models: [does/not/exist]\n", [], "models[0]: does/not/exist: not a saved rsforge model"),
        ("{}\n", ["a", "b", "--name", "x"], "--name needs exactly one MODEL_DIR"),
    ],
)
def test_bad_configs_are_clear_errors(tmp_path, yaml_text, argv, words):
    file = tmp_path / "serve.yaml"
    file.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        config_from_args(parse(*argv, "--config", str(file)))
    assert words in str(info.value)


def test_serve_command_reports_config_errors(tmp_path, capsys):
    assert serve_command(parse(str(tmp_path / "missing"))) == 2
    assert "not a saved rsforge model" in capsys.readouterr().err


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


def test_the_api_key_comes_from_a_file_or_the_environment_never_needing_a_flag(tmp_path, monkeypatch):
    a = model_dir(tmp_path / "a")
    key_file = tmp_path / "key"
    key_file.write_text("s3cret\n")
    monkeypatch.setenv("RSFORGE_API_KEY", "from-env")
    assert config_from_args(parse(str(a), "--api-key-file", str(key_file))).api_key == "s3cret"
    assert config_from_args(parse(str(a))).api_key == "from-env"
    file = tmp_path / "serve.yaml"
    file.write_text(f"api_key_file: {key_file}\n")
    assert config_from_args(parse(str(a), "--config", str(file))).api_key == "s3cret"
    for argv, words in (([str(a), "--api-key-file", str(tmp_path / "none")], "api_key_file: cannot read"),
                        ([str(a), "--api-key-file", str(file), "--api-key", "k"], "one way")):
        with pytest.raises(ConfigError, match=words):
            config_from_args(parse(*argv))
    key_file.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        config_from_args(parse(str(a), "--api-key-file", str(key_file)))


def test_a_local_ray_binds_its_ports_to_loopback():
    # Ray reads the setting when imported, so the check runs in a fresh interpreter.
    code = (
        "import os\n"
        "os.environ.pop('RAY_ADDRESS', None)\n"
        "from rsforge.serve.cli import use_loopback_ray\n"
        "use_loopback_ray(None)\n"
        "from ray._private.services import get_node_ip_address\n"
        "print(get_node_ip_address())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == "127.0.0.1"
