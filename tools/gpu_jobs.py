"""Subprocesses with a log file and a deadline, for `make gpu-check` (standard library only).

A job that outlives its deadline is interrupted the way a user would stop it: SIGINT first (pytest then writes
its junit XML and summary for the tests that ran, the benchmark its last rows), then SIGTERM, then SIGKILL, each
to the job's whole process group, so compilers or workers it started go too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

INTERRUPT_GRACE_S = 20.0  # after SIGINT: time to write results
TERMINATE_GRACE_S = 5.0


def _interruptible() -> None:
    """In the child before exec: SIGINT back to its default. A command started in the background by a shell
    without job control (``nohup make gpu-check &``) inherits SIGINT ignored, and Python keeps it ignored, so the
    graceful stop at a time limit (pytest writes its report on SIGINT) would not reach it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass(eq=False)  # compared by identity
class Job:
    name: str
    command: list[str]
    log: Path
    deadline: float  # time.monotonic() by which the job must have ended
    env: dict[str, str] | None = None
    cwd: Path | None = None
    process: subprocess.Popen | None = None
    started: float = 0.0
    ended: float = 0.0
    returncode: int | None = None
    timed_out: bool = False
    signals: list[str] = field(default_factory=list)

    def start(self) -> "Job":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.log, "wb")
        handle.write(("$ " + " ".join(self.command) + "\n").encode())
        handle.flush()
        self.started = time.monotonic()
        self.process = subprocess.Popen(self.command, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=self.env, cwd=self.cwd, start_new_session=True,
                                        preexec_fn=_interruptible)
        handle.close()  # the child holds its own descriptor
        return self

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    @property
    def done(self) -> bool:
        return self.returncode is not None

    def poll(self) -> bool:
        """Whether the job has ended; interrupts it once past its deadline."""
        if self.done:
            return True
        code = self.process.poll()
        if code is not None:
            self._finish(code)
            return True
        late = time.monotonic() - self.deadline
        if late >= 0 and not self.signals:
            self.timed_out = True
            self._signal(signal.SIGINT)
        elif late >= INTERRUPT_GRACE_S and len(self.signals) == 1:
            self._signal(signal.SIGTERM)
        elif late >= INTERRUPT_GRACE_S + TERMINATE_GRACE_S and len(self.signals) == 2:
            self._signal(signal.SIGKILL)
        return False

    def wait(self, interval: float = 0.5) -> "Job":
        while not self.poll():
            time.sleep(interval)
        return self

    def _signal(self, sig: signal.Signals) -> None:
        self.signals.append(sig.name)
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def _finish(self, code: int) -> None:
        self.returncode = code
        self.ended = time.monotonic()
        try:  # whatever the job left running in its group (e.g. compile workers) ends with it
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def outcome(self) -> str:
        """One phrase: how the job ended."""
        if self.timed_out:
            return f"stopped at its time limit after {self.seconds:.0f} s ({' then '.join(self.signals)})"
        return f"exit status {self.returncode} after {self.seconds:.0f} s"

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


def wait_all(jobs: list[Job], interval: float = 0.5, on_done=None) -> None:
    """Poll ``jobs`` until every one has ended, calling ``on_done(job)`` as each ends."""
    pending = list(jobs)
    while pending:
        for job in list(pending):
            if job.poll():
                pending.remove(job)
                if on_done is not None:
                    on_done(job)
        if pending:
            time.sleep(interval)
