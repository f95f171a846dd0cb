"""The driver's view of a Ray training run: one progress line per stage, fed by the `metrics.jsonl`
that rank 0 appends one record to per optimizer step.

Workers print nothing to the driver (Ray's `log_to_driver` is off; each rank writes
`logs/worker-rank<N>.log` in the run directory), so the console shows only this. On a terminal each
stage is a tqdm bar; in a log file (no TTY) a plain line at every tenth of the stage and at its end,
so the file reads top to bottom without carriage-return redraws.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from tqdm import tqdm


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class StageLine:
    """One stage's progress: steps done of all, the latest loss, samples/s and ETA over this session."""

    def __init__(self, record: dict, stages: int, stream: TextIO, tty: bool) -> None:
        self.name = f"stage {record['stage']}/{stages} {record['kind']}"
        self.total = record["stage_steps"]
        self.stream, self.tty = stream, tty
        # Rates count from the first record this session saw: a resumed run's earlier steps took no time here.
        self.first_step, self.first_time = record["stage_step"], time.time()
        self.done = self.first_step - 1
        self.printed_tenth = -1
        self.bar = tqdm(total=self.total, initial=self.done, desc=self.name, unit="step", file=stream,
                        dynamic_ncols=True, leave=True) if tty else None

    def update(self, record: dict) -> None:
        steps = record["stage_step"] - self.done
        self.done = record["stage_step"]
        elapsed = time.time() - self.first_time
        rate = (self.done - self.first_step) / elapsed if self.done > self.first_step else None
        speed = f"{rate * record.get('samples', 0):.1f} samples/s" if rate else "-- samples/s"
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss {record['loss']:.4f}, {speed}", refresh=False)
            self.bar.update(steps)
            return
        tenth = self.done * 10 // self.total
        if tenth > self.printed_tenth or self.done == self.total:
            self.printed_tenth = tenth
            eta = _clock((self.total - self.done) / rate) if rate else "--"
            print(f"{self.name}  step {self.done}/{self.total} ({100 * self.done // self.total}%)  "
                  f"loss {record['loss']:.4f}  {speed}  elapsed {_clock(elapsed)}  ETA {eta}",
                  file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class RunConsole:
    """Follows `metrics.jsonl` from a background thread while `trainer.fit()` runs. A file already there
    (a resumed run's) is read only once the restoring worker has rewritten it, cut back to its checkpoint,
    and only records past `from_step` are shown."""

    def __init__(self, path: Path, stages: int, *, from_step: int = 0, stream: TextIO | None = None,
                 interval: float = 0.5) -> None:
        self.path, self.stages, self.from_step = Path(path), stages, from_step
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = interval
        self.lines: dict[int, StageLine] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="rsforge-console", daemon=True)
        self._offset, self._inode, self._last_step = 0, None, from_step
        if self.path.is_file():  # a previous session's file: the resuming worker rewrites it (a new inode)
            stat = self.path.stat()
            self._offset, self._inode = stat.st_size, stat.st_ino

    def __enter__(self) -> RunConsole:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._read()
        for line in self.lines.values():
            line.close()

    def _follow(self) -> None:
        while not self._stop.wait(self.interval):
            self._read()

    def _read(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return
        if stat.st_ino != self._inode or stat.st_size < self._offset:
            self._inode, self._offset = stat.st_ino, 0
        with self.path.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written is read next time
        self._offset += len(complete)
        for raw in complete.splitlines():
            try:
                record = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if record.get("step", 0) > self._last_step and "stage_steps" in record:
                self._last_step = record["step"]
                self._show(record)

    def _show(self, record: dict) -> None:
        stage = record["stage"]
        if stage not in self.lines:
            for earlier in self.lines.values():
                earlier.close()
            self.lines[stage] = StageLine(record, self.stages, self.stream, self.tty)
        self.lines[stage].update(record)
