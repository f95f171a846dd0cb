"""Registry of parts: kind -> name -> PartSpec (factory and config as import strings, distribution).

Both the factory and the config class may be given as `"module:attr"` import strings, and are imported
only when a recipe uses the part: listing what is installed (`rsforge plugins`, `rsforge --help`)
imports neither torch nor pydantic models of every part."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from rsforge.core.errors import RecipeError

KINDS = ("encoder", "bridge", "decoder", "head", "reward", "dataset", "task")


@dataclass(frozen=True)
class PartSpec:
    kind: str
    name: str
    factory: str
    config_source: type | str  # the config class, or its import string
    distribution: str
    description: str = ""
    example: dict[str, Any] | None = None  # a tiny config the contract test builds the part from

    def _load(self, what: str, reference: str) -> Any:
        module_name, _, attr = reference.partition(":")
        module = importlib.import_module(module_name)
        try:
            return getattr(module, attr)
        except AttributeError as exc:
            raise ImportError(f"{self.kind} '{self.name}' ({self.distribution}): {what} {reference!r} "
                              "not found") from exc

    def load_factory(self) -> Any:
        return self._load("factory", self.factory)

    @cached_property
    def config(self) -> type:
        """The part's config class (imported on first use when it was registered as a string)."""
        source = self.config_source
        return self._load("config", source) if isinstance(source, str) else source


@dataclass
class Registry:
    parts: dict[str, dict[str, PartSpec]] = field(default_factory=lambda: {k: {} for k in KINDS})

    def add(self, spec: PartSpec) -> None:
        where = f"{spec.kind} '{spec.name}' from {spec.distribution}"
        if not (isinstance(spec.factory, str) and ":" in spec.factory):
            raise ValueError(f"{where}: factory must be an import string 'module:attr', got {spec.factory!r}")
        config = spec.config_source
        if not (isinstance(config, type) or (isinstance(config, str) and ":" in config)):
            raise ValueError(f"{where}: config must be a class or an import string 'module:attr', got {config!r}")
        existing = self.parts[spec.kind].get(spec.name)
        if existing is not None:
            raise ValueError(
                f"two {spec.kind}s are registered as '{spec.name}': one by {existing.distribution} "
                f"({existing.factory}) and one by {spec.distribution} ({spec.factory})"
            )
        self.parts[spec.kind][spec.name] = spec

    def get(self, kind: str, name: str, *, path: str = "") -> PartSpec:
        try:
            return self.parts[kind][name]
        except KeyError:
            known = ", ".join(sorted(self.parts[kind])) or "(none installed)"
            where = f"{path}: " if path else ""
            raise RecipeError(f"{where}unknown {kind} '{name}'; known {kind}s: {known}") from None

    def names(self, kind: str) -> list[str]:
        return sorted(self.parts[kind])
