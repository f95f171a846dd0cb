from rsforge.core.hookspecs import hookimpl


@hookimpl
def register_commands(cli):
    # The CLI module imports no Ray: building `rsforge --help` must stay fast.
    from rsforge.train.cli import add_commands

    add_commands(cli)
