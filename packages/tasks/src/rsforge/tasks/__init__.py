"""Tasks: prompt, answer parser and metric per task (`task`, `builtin`, `parsers`, `metrics`), and
evaluation of a saved model on a dataset split (`evaluate`, `rsforge eval`). Nothing here imports
torch at import time except `evaluate`."""
