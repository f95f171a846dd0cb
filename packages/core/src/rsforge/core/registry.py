"""Registry of parts: kind -> name -> PartSpec (factory import string, config class, distribution)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from rsforge.core.errors import RecipeError

KINDS = ("encoder", "bridge", "decoder", "head", "reward", "dataset")


@dataclass(frozen=True)
class PartSpec:
    kind: str
    name: str
    factory: str
    config: type
    distribution: str
    description: str = ""
    example: dict[str, Any] | None = None  # a tiny config the contract test builds the part from

    def load_factory(self) -> Any:
        module_name, _, attr = self.factory.partition(":")
        module = importlib.import_module(module_name)
        try:
            return getattr(module, attr)
        except AttributeError as exc:
            raise ImportError(
                f"{self.kind} '{self.name}' ({self.distribution}): factory {self.factory!r} not found"
            ) from exc


@dataclass
class Registry:
    parts: dict[str, dict[str, PartSpec]] = field(default_factory=lambda: {k: {} for k in KINDS})

    def add(self, spec: PartSpec) -> None:
        if not spec.factory or ":" not in spec.factory:
            raise ValueError(
                f"{spec.kind} '{spec.name}' from {spec.distribution}: factory must be an import "
                f"string 'module:attr', got {spec.factory!r}"
            )
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
