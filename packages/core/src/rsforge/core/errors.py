"""Errors the kernel raises for bad user input; each message names the file, key or part at fault."""


class RecipeError(ValueError):
    """A recipe is invalid: the message carries the recipe path of the bad value."""


class AssemblyError(ValueError):
    """Two neighbouring parts do not fit together (the message names both)."""


class PluginError(RuntimeError):
    """A plugin failed to load while strict plugin loading was asked for."""
