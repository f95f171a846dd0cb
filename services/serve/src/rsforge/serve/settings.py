"""What `rsforge serve` runs: the models and the deployment settings, from flags or a YAML file.

`--config serve.yaml` holds the same settings as the flags (flags given on the command line win):

    models:
      - runs/captioner/model                  # a model directory, served under its recipe's name
      - {path: runs/masks/model, name: masks} # or with a name (and max_batch_size, batch_wait_ms) of its own
    host: 127.0.0.1
    port: 8000
    replicas: 1            # fixed replicas per model, or autoscaling between min_replicas..max_replicas
    num_cpus: 0            # CPUs / GPUs reserved per model replica
    num_gpus: 0
    max_batch_size: 16     # requests grouped into one batched generation
    batch_wait_ms: 10      # how long a batch waits to fill
    api_key_file: null     # a file holding the API key; else $RSFORGE_API_KEY (never the key in a flag: `ps` shows it)
    allow_image_hosts: []  # hosts whose http(s) image URLs may be fetched
    max_body_bytes: 67108864          # limits per request, checked by the ingress before any expensive work
    max_text_chars: 32768             # per text part
    max_total_text_chars: 131072      # all text of a conversation
    max_image_pixels: 16777216        # per chat image, from its header before decoding
    max_detect_pixels: 67108864       # per /v1/change/detect scene (read at native resolution, tile by tile)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rsforge.core.model import RECIPE_FILE
from rsforge.serve.limits import Limits

API_KEY_ENV = "RSFORGE_API_KEY"


class ConfigError(ValueError):
    """A serve configuration that cannot run; the message names the file and field."""


class ModelEntry(BaseModel):
    """One served model; its own batching settings, when given, override the top-level ones."""

    model_config = ConfigDict(extra="forbid")
    path: str
    name: str | None = Field(default=None, min_length=1)
    max_batch_size: int | None = Field(default=None, ge=1, le=512)
    batch_wait_ms: float | None = Field(default=None, ge=0, le=10_000)


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[ModelEntry] = Field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    replicas: int = Field(default=1, ge=1)
    min_replicas: int | None = Field(default=None, ge=0)
    max_replicas: int | None = Field(default=None, ge=1)
    # Autoscaling adds a replica when each has more than this many requests in flight.
    target_ongoing_requests: float = Field(default=16.0, gt=0)
    # No CPU reservation by default: replicas share a small machine (or a test's Ray instance) with
    # other work instead of waiting for a free core; ask for more on a real cluster.
    num_cpus: float = Field(default=0.0, ge=0)
    num_gpus: float = Field(default=0.0, ge=0)
    max_batch_size: int = Field(default=16, ge=1, le=512)
    batch_wait_ms: float = Field(default=10.0, ge=0, le=10_000)
    api_key: str | None = Field(default=None, min_length=1)
    api_key_file: str | None = Field(default=None, min_length=1)
    allow_image_hosts: list[str] = Field(default_factory=list)
    image_fetch_timeout_s: float = Field(default=10.0, gt=0, le=120)
    max_body_bytes: int = Field(default=Limits.max_body_bytes, ge=1024)
    max_text_chars: int = Field(default=Limits.max_text_chars, ge=1)
    max_total_text_chars: int = Field(default=Limits.max_total_text_chars, ge=1)
    max_image_pixels: int = Field(default=Limits.max_image_pixels, ge=1)
    max_detect_pixels: int = Field(default=Limits.max_detect_pixels, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _models_as_entries(cls, data: Any) -> Any:
        # A bare string in `models` is a path: the short form of {path: ...}.
        if isinstance(data, dict) and isinstance(data.get("models"), list):
            data = {**data, "models": [{"path": m} if isinstance(m, str) else m for m in data["models"]]}
        return data

    @model_validator(mode="after")
    def _check(self) -> ServeConfig:
        if (self.min_replicas is None) != (self.max_replicas is None):
            raise ValueError("give both min_replicas and max_replicas for autoscaling, or neither")
        if self.min_replicas is not None and self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) is above max_replicas ({self.max_replicas})")
        return self

    @property
    def limits(self) -> Limits:
        return Limits(self.max_body_bytes, self.max_text_chars, self.max_total_text_chars, self.max_image_pixels,
                      self.max_detect_pixels)

    @property
    def autoscaling(self) -> dict[str, Any] | None:
        if self.max_replicas is None:
            return None
        return {
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "target_ongoing_requests": self.target_ongoing_requests,
        }

    def checked(self) -> ServeConfig:
        """This config with an API key from the environment if none was given, after checking that it
        names at least one model and that every model directory holds a saved model."""
        if not self.models:
            raise ConfigError("no model to serve: give MODEL_DIR arguments or `models:` in the config file")
        for i, entry in enumerate(self.models):
            if not (Path(entry.path).expanduser() / RECIPE_FILE).is_file():
                raise ConfigError(f"models[{i}]: {entry.path}: not a saved rsforge model (no {RECIPE_FILE})")
        names = [e.name for e in self.models if e.name]
        if len(names) != len(set(names)):
            raise ConfigError(f"models: two models share a name ({', '.join(names)})")
        if self.api_key_file is not None:
            if self.api_key is not None:
                raise ConfigError("api_key_file: give the API key one way, not also as api_key")
            return self.model_copy(update={"api_key": read_api_key(self.api_key_file)})
        if self.api_key is None and os.environ.get(API_KEY_ENV):
            return self.model_copy(update={"api_key": os.environ[API_KEY_ENV]})
        return self


def read_api_key(path: str) -> str:
    """The API key in the file at `path` (its first line, surrounding whitespace dropped)."""
    try:
        lines = Path(path).expanduser().read_text().strip().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"api_key_file: cannot read {path}: {exc}") from None
    if not lines or not lines[0].strip():
        raise ConfigError(f"api_key_file: {path} is empty")
    return lines[0].strip()


def validation_message(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"{source}: {where}: unknown key")
        else:
            lines.append(f"{source}: {where}: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(lines)


def load_config(path: str | Path | None = None, **overrides: Any) -> ServeConfig:
    """The config file at `path` (or defaults) with `overrides` (the flags given) on top."""
    raw: dict[str, Any] = {}
    source = "serve flags"
    if path is not None:
        source = str(path)
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the config file: {exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of settings")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return ServeConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, source)) from None
