"""rsforge kernel: hookspecs, registry, recipes, assembler, model container, data, metrics, CLI.

Importing this package is cheap on purpose: no torch, no plugin is imported here. Plugins are
discovered on first use through `PluginManager` (see `rsforge.core.plugins`).
"""

__version__ = "0.1.0"
