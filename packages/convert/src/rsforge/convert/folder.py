"""An rsforge model folder from converted parts: the parts' files, `recipe.yaml` (paths as `${recipe_dir}`,
so the folder can move) and `model.safetensors`, all written into a temporary sibling that replaces OUT
only once the converted model has been assembled from it: a failed conversion leaves nothing behind."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from rsforge.convert.checkpoint import ConversionError
from rsforge.core.atomic import atomic_dir
from rsforge.core.model import RECIPE_FILE, WEIGHTS_FILE, RSForgeModel
from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import expand_recipe_dir, parse_recipe

WriteParts = Callable[[Path], dict[str, Any]]


def write_model_folder(out: str | Path, write_parts: WriteParts, *, name: str,
                       plugins: PluginManager | None = None) -> Path:
    """`write_parts(folder)` writes the parts' files and returns the recipe that composes them."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: exists and is not an empty folder; convert writes a new model folder")
    plugins = plugins or PluginManager()
    with atomic_dir(out) as tmp:
        raw = {"name": name, **write_parts(tmp)}
        recipe = parse_recipe(expand_recipe_dir(raw, tmp), plugins.registry, source=str(out / RECIPE_FILE))
        # Assembling loads every part from the files just written: the proof that the folder is complete.
        try:
            model = RSForgeModel.from_recipe(recipe, plugins)
        except Exception as exc:  # a part refused what was written: say so in OUT's terms, not the temp folder's
            raise ConversionError(f"the converted model does not assemble: {str(exc).replace(str(tmp), str(out))}"
                                  ) from None
        staging = tmp / ".staging"
        model.save_pretrained(staging)
        (staging / WEIGHTS_FILE).rename(tmp / WEIGHTS_FILE)
        shutil.rmtree(staging)
        (tmp / RECIPE_FILE).write_text(yaml.safe_dump(raw, sort_keys=False))
    return out
