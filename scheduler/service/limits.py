"""The scheduler's size bounds: of gRPC messages, error details, problem lists and records.

Every text the scheduler echoes back (a problem line naming a node, a failure's error and
traceback) is cut to a bound with a marker saying how much was left out, so one large
input cannot make an answer too large to deliver, for its sender or anyone else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from executor.pb.dagyo.v1.failure_pb2 import FailureReport

ENV_MAX_MESSAGE_BYTES = "DAGYO_MAX_MESSAGE_BYTES"
# The largest gRPC message either side accepts: a Flow JSON of Submit, a page of List.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
# The problems of an invalid flow that Submit answers; a count stands for the rest.
MAX_PROBLEMS = 100
# One problem line (it may echo a name from the flow).
MAX_LINE_CHARS = 400
# The details of an error status travel in gRPC trailers (metadata, ~8 KB at most).
MAX_DETAILS_CHARS = 4000
# A failure report's error and traceback, as kept in the record and the failure list.
MAX_ERROR_CHARS = 4000
MAX_TRACEBACK_CHARS = 16000
# A page of List or Failures stops at this many serialized bytes (and at its limit).
PAGE_BYTES = 1024 * 1024


def max_message_bytes(environ: Mapping[str, str]) -> int:
    """A client's largest gRPC message: ``DAGYO_MAX_MESSAGE_BYTES``, else the default."""
    raw = environ.get(ENV_MAX_MESSAGE_BYTES, "")
    return int(raw) if raw.strip().isdigit() else MAX_MESSAGE_BYTES


def cut(text: str, limit: int) -> str:
    """``text``, or its first ``limit`` characters and a marker counting the rest."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters not shown]"


def capped_problems(problems: Sequence[str]) -> list[str]:
    """The first MAX_PROBLEMS problem lines, each cut, then ``… and N more problems``."""
    lines = [cut(line, MAX_LINE_CHARS) for line in problems[:MAX_PROBLEMS]]
    if len(problems) > MAX_PROBLEMS:
        lines.append(f"… and {len(problems) - MAX_PROBLEMS} more problems")
    return lines


def details(lines: Sequence[str]) -> str:
    """Problem lines as the details of an error status: capped lines, then the whole cut."""
    return cut("\n".join(capped_problems(lines)), MAX_DETAILS_CHARS)


def bounded_failure(report: FailureReport) -> FailureReport:
    """The report with its error and traceback cut to their bounds (a copy when cut)."""
    if len(report.error) <= MAX_ERROR_CHARS and len(report.traceback) <= MAX_TRACEBACK_CHARS:
        return report
    bounded = FailureReport()
    bounded.CopyFrom(report)
    bounded.error = cut(report.error, MAX_ERROR_CHARS)
    # The end of a traceback names the exception: keep that end.
    if len(report.traceback) > MAX_TRACEBACK_CHARS:
        left_out = len(report.traceback) - MAX_TRACEBACK_CHARS
        bounded.traceback = (
            f"[{left_out} characters not shown]…" + report.traceback[-MAX_TRACEBACK_CHARS:]
        )
    return bounded
