"""A plain progress display: one timestamped line per step, flushed at once (readable in CI logs too).

With a plan (section name -> seconds budgeted), each line also shows the estimated time left: what remains of
the running section's budget plus the budgets of the sections after it. A section asks ``out_of_time()`` between
steps and stops (saying so in the report) once its budget is spent.
"""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, stream=None, plan: dict[str, float] | None = None):
        self.stream = stream or sys.stdout
        self.start = time.monotonic()
        self.plan = dict(plan or {})
        self.section: str | None = None
        self.section_start = self.start

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def begin(self, section: str) -> None:
        """Start a planned section. It ends where the plan puts it, counted from the run's start (the budgets of
        it and every section before it), so a section that overran shortens the next instead of the whole run."""
        self.section, self.section_start = section, time.monotonic()

    def section_left(self) -> float | None:
        """Seconds left of the running section's budget (None: no budget)."""
        if self.section is None or self.plan.get(self.section) is None:
            return None
        names = list(self.plan)
        end = sum(self.plan[n] or 0.0 for n in names[:names.index(self.section) + 1])
        return end - self.elapsed

    def out_of_time(self) -> bool:
        left = self.section_left()
        return left is not None and left <= 0

    def time_left(self) -> float | None:
        if not self.plan:
            return None
        names = list(self.plan)
        later = names[names.index(self.section) + 1:] if self.section in self.plan else names
        if any(self.plan[n] is None for n in later):
            return None
        return max(0.0, self.section_left() or 0.0) + sum(self.plan[n] for n in later)

    def __call__(self, text: str) -> None:
        minutes, seconds = divmod(int(self.elapsed), 60)
        left = self.time_left()
        estimate = f" (~{left / 60:.1f} min left)" if left is not None else ""
        print(f"[{minutes:2d}:{seconds:02d}]{estimate} {text}", file=self.stream, flush=True)
