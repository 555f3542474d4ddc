"""What `make gpu-check` found, read from its logs and written out (standard library only).

Parses pytest's junit XML (or, when a run was killed before writing it, the per-test lines of its log) and
compute-sanitizer's summaries; writes summary.json and REPORT.md and bundles the logs into one tar file.
"""

from __future__ import annotations

import json
import re
import tarfile
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATUSES = ("passed", "failed", "partial", "timed out", "skipped", "pending")


@dataclass
class Stage:
    name: str
    title: str
    status: str = "pending"  # one of STATUSES
    detail: str = ""  # one line: counts, or why it was skipped / failed
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # further lines for the report


# ------------------------------------------------------------------------------------------------ pytest
@dataclass
class PytestCounts:
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    interrupted: int = 0  # the test running when a time limit stopped pytest
    failures: list[str] = field(default_factory=list)  # test ids
    skip_reasons: Counter = field(default_factory=Counter)
    complete: bool = True  # False: read from the log of a run that did not finish

    def add(self, other: "PytestCounts") -> None:
        self.passed += other.passed
        self.failed += other.failed
        self.errors += other.errors
        self.skipped += other.skipped
        self.interrupted += other.interrupted
        self.failures += other.failures
        self.skip_reasons.update(other.skip_reasons)
        self.complete = self.complete and other.complete

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.errors + self.skipped

    def summary(self) -> str:
        text = f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped"
        text += f", {self.errors} errors" if self.errors else ""
        return text + (f", {self.interrupted} interrupted" if self.interrupted else "")


def parse_junit(path: Path) -> PytestCounts:
    counts = PytestCounts()
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
        if case.get("name") is None:  # what pytest writes for the test a KeyboardInterrupt stopped
            counts.interrupted += 1
        elif case.find("failure") is not None:
            counts.failed += 1
            counts.failures.append(test_id)
        elif case.find("error") is not None:
            counts.errors += 1
            counts.failures.append(test_id)
        elif (skipped := case.find("skipped")) is not None:
            counts.skipped += 1
            counts.skip_reasons[_skip_reason(skipped.get("message", ""))] += 1
        else:
            counts.passed += 1
    return counts


def _skip_reason(message: str) -> str:
    return re.sub(r"^Skipped: ", "", message).strip() or "no reason given"


_VERBOSE_LINE = re.compile(r"^(\S+::\S.*?) (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)\b(.*)$")


def parse_verbose_log(path: Path) -> PytestCounts:
    """Counts from ``pytest -v`` lines ("tests/x.py::test_a PASSED [ 3%]") of a run that wrote no junit file."""
    counts = PytestCounts(complete=False)
    for line in path.read_text(errors="replace").splitlines():
        match = _VERBOSE_LINE.match(line.strip())
        if not match:
            continue
        test_id, outcome, rest = match.groups()
        if outcome in ("PASSED", "XPASS", "XFAIL"):
            counts.passed += 1
        elif outcome == "FAILED":
            counts.failed += 1
            counts.failures.append(test_id)
        elif outcome == "ERROR":
            counts.errors += 1
            counts.failures.append(test_id)
        else:
            counts.skipped += 1
            counts.skip_reasons[rest.strip(" ()[]%0123456789") or "see the log"] += 1
    return counts


def read_test_counts(junit: Path, log: Path) -> PytestCounts | None:
    """From the junit file when pytest wrote one, else from its log; None when neither says anything."""
    if junit.exists():
        try:
            return parse_junit(junit)
        except ET.ParseError:
            pass
    if log.exists():
        counts = parse_verbose_log(log)
        return counts if counts.total else None
    return None


# ------------------------------------------------------------------------------------- compute-sanitizer
_ERROR_SUMMARY = re.compile(r"ERROR SUMMARY: (\d+) error")
_RACE_SUMMARY = re.compile(r"RACECHECK SUMMARY: (\d+) hazards? displayed \((\d+) errors?, (\d+) warnings?\)")


def parse_sanitizer(text: str) -> dict | None:
    """{"errors": n, "warnings": n} from a memcheck or racecheck log; None when it has no summary line."""
    if match := _RACE_SUMMARY.search(text):
        return {"errors": int(match.group(2)), "warnings": int(match.group(3))}
    if match := _ERROR_SUMMARY.search(text):
        return {"errors": int(match.group(1)), "warnings": 0}
    return None


# ---------------------------------------------------------------------------------------------- output
def write_summary(path: Path, stages: list[Stage], extra: dict) -> None:
    data = {"stages": [asdict(s) for s in stages], **extra}
    path.write_text(json.dumps(data, indent=1, default=str) + "\n")


def stage_table(stages: list[Stage]) -> str:
    lines = ["| stage | status | time | detail |", "|---|---|---|---|"]
    for s in stages:
        seconds = f"{s.seconds:.0f} s" if s.seconds else "—"
        lines.append(f"| {s.title} | **{s.status}** | {seconds} | {s.detail.replace('|', '/')} |")
    return "\n".join(lines)


def write_report(path: Path, header: list[str], stages: list[Stage], sections: list[str]) -> None:
    parts = ["# GPU check", *header, "## Stages", stage_table(stages)]
    for s in stages:
        if s.notes:
            parts.append(f"### {s.title}\n\n" + "\n".join(f"- {n}" if not n.startswith(("|", "```", " ")) else n
                                                         for n in s.notes))
    parts += sections
    path.write_text("\n\n".join(parts) + "\n")


def bundle(logs: Path, tar_path: Path) -> None:
    """All files under ``logs`` into one gzipped tar (written beside, then moved: never a half-written file)."""
    partial = tar_path.with_suffix(".partial")
    with tarfile.open(partial, "w:gz") as tar:
        for file in sorted(logs.rglob("*")):
            if file.is_file():
                tar.add(file, arcname=f"logs/{file.relative_to(logs)}")
    partial.replace(tar_path)
