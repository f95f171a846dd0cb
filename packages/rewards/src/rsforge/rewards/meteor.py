"""METEOR 1.5 per sample through pycocoevalcap's Java scorer, kept as ONE persistent process.

pycocoevalcap's `Meteor` also keeps a process, but code that builds one `Meteor()` per batch starts a
JVM (about a second, 2 GB heap) per batch. This reward starts the jar on its first call, reuses it
for every later call, and stops it on `close()`, on garbage collection or at interpreter exit
(`weakref.finalize`). The protocol and the -norm option are pycocoevalcap's, so the scores equal its
`Meteor().compute_score`.
"""

from __future__ import annotations

import subprocess
import threading
import weakref
from pathlib import Path
from typing import Any

import pycocoevalcap.meteor.meteor as coco_meteor
import torch

from rsforge.core.interfaces import Reward
from rsforge.rewards.common import as_scores, check_batch
from rsforge.rewards.configs import MeteorConfig

JAR = Path(coco_meteor.__file__).resolve().parent / coco_meteor.METEOR_JAR


def _clean(text: str) -> str:
    # '|||' separates fields and a newline ends a request in the jar's protocol.
    return " ".join(text.replace("|||", "").split())


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    process.stdout.close()
    process.stderr.close()


class Meteor(Reward):
    """METEOR of each candidate against its references, in [0, 1]."""

    def __init__(self, config: MeteorConfig) -> None:
        self.config = config
        self._process: subprocess.Popen | None = None
        self._finalizer: weakref.finalize | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _start(self) -> subprocess.Popen:
        if not JAR.is_file():
            raise FileNotFoundError(f"meteor: {JAR} not found (it ships with pycocoevalcap)")
        command = [self.config.java, "-jar", f"-Xmx{self.config.memory}", str(JAR), "-", "-", "-stdio",
                   "-l", "en", "-norm"]
        try:
            process = subprocess.Popen(command, cwd=JAR.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"meteor.java: {self.config.java!r} not found; METEOR needs Java") from exc
        self._process = process
        self._finalizer = weakref.finalize(self, _stop, process)
        return process

    def close(self) -> None:
        """Stop the Java process (a later call starts a new one)."""
        if self._finalizer is not None:
            self._finalizer()
        self._process = self._finalizer = None

    def __enter__(self) -> Meteor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        # A copy sent to another process starts its own JVM there.
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"])

    def __call__(self, candidates: list[str], references: list[list[str]], extras: dict[str, Any] | None = None
                 ) -> torch.Tensor:
        check_batch("meteor", candidates, references)
        if not candidates:
            return as_scores([])
        lines = [" ||| ".join(("SCORE", *map(_clean, refs), _clean(c))) + "\n"
                 for c, refs in zip(candidates, references, strict=True)]
        with self._lock:
            process = self._process if self.running else self._start()
            stats = self._exchange(process, lines, len(lines))
            # EVAL answers each sample's score, then the corpus score.
            scores = self._exchange(process, ["EVAL ||| " + " ||| ".join(stats) + "\n"], len(stats) + 1)
        return as_scores([float(s) for s in scores[:-1]])

    def _exchange(self, process: subprocess.Popen, lines: list[str], answers: int) -> list[str]:
        """Send request lines and read `answers` lines. A thread writes, so a
        long batch cannot deadlock on full pipes while the jar's answers wait to be read."""
        writer = threading.Thread(target=self._write, args=(process, lines), daemon=True)
        writer.start()
        read = []
        for _ in range(answers):
            line = process.stdout.readline()
            if not line:
                writer.join()
                error = process.stderr.read().decode(errors="replace").strip().splitlines()[-5:]
                self.close()
                raise RuntimeError("meteor: the Java scorer stopped: " + " | ".join(error))
            read.append(line.decode().strip())
        writer.join()
        return read

    @staticmethod
    def _write(process: subprocess.Popen, lines: list[str]) -> None:
        try:
            process.stdin.write("".join(lines).encode())
            process.stdin.flush()
        except BrokenPipeError:  # the reader reports the stopped process
            pass
