"""Errors the kernel raises for bad user input; each message names the file, key or part at fault."""


class RecipeError(ValueError):
    """A recipe is invalid: the message carries the recipe path of the bad value."""


class AssemblyError(ValueError):
    """Two neighbouring parts do not fit together (the message names both)."""


class PluginError(RuntimeError):
    """A plugin failed to load while strict plugin loading was asked for."""


class RunError(RuntimeError):
    """A command's run stopped (a worker failed, the user interrupted it); the message is one line that says
    what happened and what the user can do next (the log to read, the command that resumes it)."""
