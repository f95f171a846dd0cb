"""rsforge-geo's hook: `rsforge detect`."""

from rsforge.core.hookspecs import hookimpl


@hookimpl
def register_commands(cli):
    from rsforge.geo.cli import add_commands

    add_commands(cli)
