"""What a training worker writes into the run directory besides checkpoints: the per-step metrics
(read back by the driver's console and the report) and each rank's own output."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from rsforge.core.atomic import atomic_write_text


class MetricsLog:
    """metrics.jsonl in the run directory, one line per optimizer step, written by rank 0. Each line is
    one `write` on an O_APPEND descriptor, so a crash leaves whole lines; a restore first drops the
    lines past the checkpoint it resumes from, so the file never repeats a step."""

    def __init__(self, path: Path, restored_step: int) -> None:
        self.path = path
        kept = []
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    if json.loads(line)["step"] <= restored_step:
                        kept.append(line)
                except (json.JSONDecodeError, KeyError, TypeError):
                    break  # a torn last line from a crash: nothing after it is trusted
        atomic_write_text(path, "".join(line + "\n" for line in kept))
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND)

    def write(self, record: dict) -> None:
        os.write(self.fd, (json.dumps(record) + "\n").encode())

    def close(self) -> None:
        os.close(self.fd)


def redirect_output(path: Path) -> None:
    """Send this process's stdout and stderr (Python's and native code's) to `path`, appending."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
