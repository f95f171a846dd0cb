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


def weights_misfit(missing: list[str], unexpected: list[str], mismatched: list[str], *, limit: int = 20,
                   missing_hint: str = "") -> str:
    """One line naming the tensors a weights file lacks, has in excess and has in another shape ('' when it
    fits), each list cut at `limit` names: the body of every part's "does not fit" error."""
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}{missing_hint}: {', '.join(missing[:limit])}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)}: {', '.join(unexpected[:limit])}")
    if mismatched:
        problems.append(f"shape mismatch {len(mismatched)}: {'; '.join(mismatched[:limit])}")
    return " | ".join(problems)
