"""Plugin discovery: entry points in the `rsforge` group, loaded lazily and once per manager.

The caller owns its `PluginManager`; nothing here is a process-wide mutable singleton, so tests
build their own. A plugin that fails to import is recorded with its error and the rest keep
working, unless `RSFORGE_STRICT_PLUGINS=1`. `RSFORGE_LOAD_PLUGINS=a,b` loads only the named entry
points, filtered before anything is imported.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

import pluggy

from rsforge.core import hookspecs
from rsforge.core.errors import PluginError
from rsforge.core.registry import KINDS, PartSpec, Registry

ENTRY_POINT_GROUP = "rsforge"


@dataclass(frozen=True)
class PluginFailure:
    name: str
    distribution: str
    error: str
    traceback: str


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


class PluginManager:
    def __init__(
        self,
        *,
        strict: bool | None = None,
        only: list[str] | None = None,
        entry_points_source: list[EntryPoint] | None = None,
    ) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self.strict = _truthy(os.environ.get("RSFORGE_STRICT_PLUGINS")) if strict is None else strict
        if only is None and os.environ.get("RSFORGE_LOAD_PLUGINS"):
            only = [n.strip() for n in os.environ["RSFORGE_LOAD_PLUGINS"].split(",") if n.strip()]
        self.only = only
        self._entry_points_source = entry_points_source
        self._loaded = False
        self._registry: Registry | None = None
        self.failures: list[PluginFailure] = []
        self.distributions: dict[str, str] = {}

    def register(self, plugin: object, name: str, distribution: str) -> None:
        """Register an in-process plugin object (tests, notebooks). Entry points are still loaded."""
        self._ensure_loaded()
        self._pm.register(plugin, name=name)
        self.distributions[name] = distribution
        self._pm.check_pending()
        self._registry = None

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        eps = self._entry_points_source
        if eps is None:
            eps = list(entry_points(group=ENTRY_POINT_GROUP))
        for ep in sorted(eps, key=lambda e: e.name):
            if self.only is not None and ep.name not in self.only:
                continue
            dist = ep.dist.name if ep.dist is not None else ep.value
            try:
                self._pm.register(ep.load(), name=ep.name)
                self._pm.check_pending()
            except Exception as exc:
                if self._pm.has_plugin(ep.name):
                    self._pm.unregister(name=ep.name)
                self._record_failure(ep.name, dist, exc)
                continue
            self.distributions[ep.name] = dist

    @property
    def hook(self):
        self._ensure_loaded()
        return self._pm.hook

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = self._collect()
        return self._registry

    def _collect(self) -> Registry:
        self._ensure_loaded()
        registry = Registry()
        for kind in KINDS:
            caller = getattr(self._pm.hook, f"register_{kind}s")
            for impl in caller.get_hookimpls():
                dist = self.distributions.get(impl.plugin_name, impl.plugin_name)

                def register(name, *, factory, config, description="", example=None, _kind=kind, _dist=dist):
                    registry.add(PartSpec(_kind, name, factory, config, _dist, description, example))

                try:
                    impl.function(register=register)
                except ValueError:
                    raise
                except Exception as exc:
                    self._record_failure(impl.plugin_name, dist, exc)
        return registry

    def _record_failure(self, name: str, dist: str, exc: Exception) -> None:
        if self.strict:
            raise PluginError(f"plugin '{name}' ({dist}) failed to load: {type(exc).__name__}: {exc}") from exc
        self.failures.append(PluginFailure(name, dist, f"{type(exc).__name__}: {exc}", traceback.format_exc()))

    def add_commands(self, cli) -> None:
        self.hook.register_commands(cli=cli)
