"""rsforge-convert's hook: `rsforge convert`."""

from rsforge.core.hookspecs import hookimpl


@hookimpl
def register_commands(cli):
    from rsforge.convert.cli import add_commands

    add_commands(cli)
