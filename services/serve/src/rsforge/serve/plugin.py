"""rsforge plugin of `rsforge-serve`: adds the `rsforge serve` command.

Kept import-cheap: plugin discovery loads this module for every `rsforge` invocation, so Ray,
torch and FastAPI are imported only when the command runs.
"""

from __future__ import annotations

from rsforge.core.hookspecs import hookimpl


@hookimpl
def register_commands(cli) -> None:
    from rsforge.serve.cli import add_serve_command

    add_serve_command(cli)
