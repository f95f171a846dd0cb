"""A worked rsforge plugin: one bridge, `token_pooler`. See plugin.py (registration) and pooler.py (the part)."""
