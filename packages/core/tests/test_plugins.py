import inspect
import sys
from importlib.metadata import EntryPoint

import pytest

from rsforge.core import hookspecs
from rsforge.core.errors import PluginError
from rsforge.core.plugins import PluginManager

GOOD = '''
from rsforge.core.hookspecs import hookimpl
from rsforge.core.configs import EncoderConfig

@hookimpl
def register_encoders(register):
    register("{name}", factory="nowhere:Thing", config=EncoderConfig)
'''


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("rsf_test_")]:
        del sys.modules[name]


def _ep(name: str, module: str) -> EntryPoint:
    return EntryPoint(name=name, value=module, group="rsforge")


def test_a_broken_plugin_is_reported_and_the_rest_keep_working(plugin_dir):
    (plugin_dir / "rsf_test_good.py").write_text(GOOD.format(name="good"))
    (plugin_dir / "rsf_test_bad.py").write_text("raise RuntimeError('boom at import')")
    pm = PluginManager(strict=False, entry_points_source=[_ep("good", "rsf_test_good"), _ep("bad", "rsf_test_bad")])
    assert pm.registry.names("encoder") == ["good"]
    assert [(f.name, f.error) for f in pm.failures] == [("bad", "RuntimeError: boom at import")]


def test_strict_mode_turns_a_broken_plugin_into_an_error(plugin_dir):
    (plugin_dir / "rsf_test_bad2.py").write_text("raise RuntimeError('boom')")
    pm = PluginManager(strict=True, entry_points_source=[_ep("bad", "rsf_test_bad2")])
    with pytest.raises(PluginError, match=r"plugin 'bad'.*boom"):
        pm.registry  # noqa: B018


def test_load_filter_applies_before_import(plugin_dir, monkeypatch):
    (plugin_dir / "rsf_test_good3.py").write_text(GOOD.format(name="good"))
    (plugin_dir / "rsf_test_bad3.py").write_text("raise RuntimeError('must not be imported')")
    monkeypatch.setenv("RSFORGE_LOAD_PLUGINS", "good")
    pm = PluginManager(strict=True, entry_points_source=[_ep("good", "rsf_test_good3"), _ep("bad", "rsf_test_bad3")])
    assert pm.registry.names("encoder") == ["good"]
    assert "rsf_test_bad3" not in sys.modules


def test_two_parts_with_one_name_name_both_distributions(plugin_dir):
    (plugin_dir / "rsf_test_a.py").write_text(GOOD.format(name="same"))
    (plugin_dir / "rsf_test_b.py").write_text(GOOD.format(name="same"))
    pm = PluginManager(entry_points_source=[_ep("a", "rsf_test_a"), _ep("b", "rsf_test_b")])
    with pytest.raises(ValueError, match=r"two encoders are registered as 'same': one by rsf_test_a.*by rsf_test_b"):
        pm.registry  # noqa: B018


def test_a_misspelt_hook_is_caught(plugin_dir):
    (plugin_dir / "rsf_test_typo.py").write_text(
        "from rsforge.core.hookspecs import hookimpl\n\n@hookimpl\ndef register_encoder(register):\n    pass\n"
    )
    pm = PluginManager(strict=False, entry_points_source=[_ep("typo", "rsf_test_typo")])
    pm.registry  # noqa: B018
    assert pm.failures and "register_encoder" in pm.failures[0].error


def test_plugins_are_loaded_lazily_and_once(plugin_dir):
    (plugin_dir / "rsf_test_lazy.py").write_text(GOOD.format(name="lazy"))
    pm = PluginManager(entry_points_source=[_ep("lazy", "rsf_test_lazy")])
    assert "rsf_test_lazy" not in sys.modules  # constructing the manager imports nothing
    assert pm.registry is pm.registry
    assert "rsf_test_lazy" in sys.modules


def test_every_hookspec_is_documented_and_keyword_only_friendly():
    specs = [f for name, f in vars(hookspecs).items() if name.startswith("register_")]
    assert {f.__name__ for f in specs} == {
        "register_encoders", "register_bridges", "register_decoders", "register_heads",
        "register_rewards", "register_datasets", "register_tasks", "register_commands",
    }
    for spec in specs:
        assert (spec.__doc__ or "").strip(), f"{spec.__name__} has no docstring"
        assert len(inspect.signature(spec).parameters) == 1


def test_importing_the_kernel_imports_no_torch_and_no_plugin():
    import subprocess

    code = ("import sys, rsforge.core, rsforge.core.plugins, rsforge.core.recipe; "
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('ray', 'rsforge.encoders'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_config_given_as_an_import_string_is_imported_only_when_used(plugin_dir):
    (plugin_dir / "rsf_test_lazy_configs.py").write_text(
        "from rsforge.core.configs import EncoderConfig\n\nclass LazyConfig(EncoderConfig):\n    depth: int = 1\n")
    (plugin_dir / "rsf_test_lazy.py").write_text(GOOD.format(name="lazy").replace(
        "config=EncoderConfig", 'config="rsf_test_lazy_configs:LazyConfig"'))
    pm = PluginManager(strict=True, entry_points_source=[_ep("lazy", "rsf_test_lazy")])
    spec = pm.registry.get("encoder", "lazy")
    assert "rsf_test_lazy_configs" not in sys.modules  # listing the parts imported no config module
    assert spec.config.__name__ == "LazyConfig" and spec.config(name="lazy").depth == 1


@pytest.mark.parametrize(("factory", "config", "message"), [
    ("no_colon", "m:C", "factory must be an import string 'module:attr'"),
    ("m:F", "no_colon", "config must be a class or an import string 'module:attr'"),
    ("m:F", 3, "config must be a class or an import string"),
])
def test_a_malformed_spec_names_the_field(factory, config, message):
    from rsforge.core.registry import PartSpec, Registry

    with pytest.raises(ValueError, match=message):
        Registry().add(PartSpec("encoder", "x", factory, config, "dist"))
