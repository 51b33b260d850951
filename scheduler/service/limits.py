"""The scheduler's size bounds: of gRPC messages, error details, problem lists and records.

Every text the scheduler echoes back (a problem line naming a node, a failure's error and
traceback) is cut to a bound with a marker saying how much was left out, so one large
input cannot make an answer too large to deliver, for its sender or anyone else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from executor.core.errors import Invalid, RequestInvalid
from executor.core.settings import env_number
from executor.pb.dagyo.v1.failure_pb2 import FailureReport
from scheduler.flow.model import Flow

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
# What a flow's record can grow by after submit, at most, so that Get can always answer
# it: each node's progress (its executor's name, cut to MAX_NAME_BYTES, its version,
# counters and times), each edge's counters, the failure (error and traceback cut by
# bounded_failure to at most 2 bytes a character, its names to MAX_NAME_BYTES) and the
# record's own fields. An export kept with
# the record counts its value, its name and the bytes protobuf wraps them in.
MAX_NAME_BYTES = 128
NODE_RECORD_BYTES = 2 * MAX_NAME_BYTES + 128
EDGE_RECORD_BYTES = 64
FAILURE_RECORD_BYTES = 2 * (MAX_ERROR_CHARS + MAX_TRACEBACK_CHARS) + 4 * MAX_NAME_BYTES + 512
RECORD_FIELDS_BYTES = 1024
EXPORT_ITEM_OVERHEAD_BYTES = 12


def max_message_bytes(environ: Mapping[str, str]) -> int:
    """A client's largest gRPC message: ``DAGYO_MAX_MESSAGE_BYTES``, else the default.

    Raises:
        DagyoError: naming the variable when its value is not a number above 0.
    """
    return env_number(environ, ENV_MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES, int, above=0)


def record_bytes(flow: Flow, flow_json: str) -> int:
    """The most bytes the record of ``flow`` (submitted as ``flow_json``) can take, its
    kept exports left out."""
    nodes = sum(len(n.name) + len(n.progdef) + NODE_RECORD_BYTES for n in flow.nodes.values())
    edges = sum(len(str(e.source)) + len(str(e.target)) + EDGE_RECORD_BYTES for e in flow.edges)
    return (
        RECORD_FIELDS_BYTES
        + len(flow.name)
        + len(flow_json.encode("utf-8", "replace"))
        + nodes
        + edges
        + FAILURE_RECORD_BYTES
    )


def export_room_of(flow: Flow, flow_json: str, max_message_bytes: int, *, source: str) -> int:
    """The bytes of exports the record of ``flow`` has room for, so that Get can answer it
    whole in one message.

    Raises:
        RequestInvalid: the record could not be read back even without exports.
    """
    most = record_bytes(flow, flow_json)
    if most >= max_message_bytes:
        raise RequestInvalid(
            [
                f"{source}: the flow is too large for its record to be read back: with its "
                f"nodes' and edges' progress and a failure it may take {most} bytes, more "
                f"than the {max_message_bytes} bytes a message may have "
                "(DAGYO_MAX_MESSAGE_BYTES): make the flow smaller"
            ]
        )
    return max_message_bytes - most


def export_bytes(export: str, value_json: str) -> int:
    """What one kept export adds to its record, at most."""
    return len(value_json.encode()) + len(export.encode()) + EXPORT_ITEM_OVERHEAD_BYTES


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


def refusal(error: Exception) -> str:
    """An error's message as the details of a refusal: its problem lines, capped."""
    return details(error.problems if isinstance(error, Invalid) else [str(error)])


def bounded_failure(report: FailureReport) -> FailureReport:
    """The report with its texts cut to their bounds (a copy when cut): the error to
    MAX_ERROR_CHARS, the traceback to its last MAX_TRACEBACK_CHARS, each to a quarter of
    that when its characters are wide enough to pass twice as many bytes, and its names."""
    error_chars = _chars_within(report.error, MAX_ERROR_CHARS, from_end=False)
    traceback_chars = _chars_within(report.traceback, MAX_TRACEBACK_CHARS, from_end=True)
    names = (report.flow_id, report.node, report.progdef, report.executor)
    if (
        len(report.error) <= error_chars
        and len(report.traceback) <= traceback_chars
        and all(len(name.encode()) <= MAX_NAME_BYTES for name in names)
    ):
        return report
    bounded = FailureReport()
    bounded.CopyFrom(report)
    bounded.error = cut(report.error, error_chars)
    for field in ("flow_id", "node", "progdef", "executor"):
        setattr(bounded, field, short_name(getattr(report, field)))
    # The end of a traceback names the exception: keep that end.
    if len(report.traceback) > traceback_chars:
        left_out = len(report.traceback) - traceback_chars
        bounded.traceback = (
            f"[{left_out} characters not shown]…" + report.traceback[-traceback_chars:]
        )
    return bounded


def short_name(name: str) -> str:
    """A name from the wire (an executor's, a node's) as a record keeps it: its first
    MAX_NAME_BYTES bytes."""
    if len(name) * 4 <= MAX_NAME_BYTES:
        return name
    return name.encode()[:MAX_NAME_BYTES].decode("utf-8", "ignore")


def _chars_within(text: str, chars: int, *, from_end: bool) -> int:
    """How many characters of ``text`` to keep: ``chars``, or a quarter of them when those
    would take more than two bytes each on average."""
    kept = text[-chars:] if from_end else text[:chars]
    return chars if len(kept.encode("utf-8", "replace")) <= 2 * chars else chars // 4
