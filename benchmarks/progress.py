"""A plain progress display: one timestamped line per step, flushed at once (readable in CI logs too)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.start = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def __call__(self, text: str) -> None:
        minutes, seconds = divmod(int(self.elapsed), 60)
        print(f"[{minutes:2d}:{seconds:02d}] {text}", file=self.stream, flush=True)
