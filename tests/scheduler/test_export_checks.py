"""How the scheduler judges an export frame: its bounds, its producer token, its typename
and its place in the stream, the same bytes delivered again told from a different frame."""

from __future__ import annotations

import pytest

from executor.core.constants import FRAME_MAX_ITEMS
from executor.core.errors import StreamCorrupt
from executor.core.types import Int64
from executor.pb.dagyo.v1.frame_pb2 import Frame
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.service.exports import read_frame
from scheduler.service.flowstate import ExportStream, FlowRuntime

INT64 = "dagyo.types.Int64"
TOKEN = "0f" * 16


def runtime() -> FlowRuntime:
    stream = ExportStream("q", INT64, "n.total", token=TOKEN)
    return FlowRuntime(exports={"total": stream})


def frame(
    seq: int, *values: int, end: bool = False, token: str = TOKEN, typename: str = INT64
) -> bytes:
    items = [Int64(value=v).SerializeToString() for v in values]
    return Frame(
        items=items, seq=seq, end_of_stream=end, token=token, typename=typename
    ).SerializeToString()


def read(run: FlowRuntime, body: bytes) -> list[str] | None:
    read = read_frame(pb.FlowRecord(), run, "total", body, cap_bytes=1 << 20)
    return None if read is None else [e.value_json for e in read[0]]


def test_the_next_frame_is_read_and_the_same_frame_delivered_again_is_dropped() -> None:
    run = runtime()
    assert read(run, frame(0, 4)) == ['{"value":"4"}']
    assert read(run, frame(1, end=True)) == []
    # After a reconnection the broker delivers again what was kept but not acked.
    assert read(run, frame(0, 4)) is None
    assert read(run, frame(1, end=True)) is None
    assert run.exports["total"].next_seq == 2


def test_a_different_frame_under_a_seq_kept_fails_naming_the_export() -> None:
    run = runtime()
    read(run, frame(0, 4, end=True))
    with pytest.raises(
        StreamCorrupt,
        match=r"^export total \(from n.total\): frame 0 arrived again with other contents",
    ):
        read(run, frame(0, 999999))


def test_a_second_end_of_stream_fails_naming_the_export() -> None:
    run = runtime()
    read(run, frame(0, 4, end=True))
    with pytest.raises(
        StreamCorrupt, match=r"^export total \(from n.total\): frame 1 after end-of-stream$"
    ):
        read(run, frame(1, end=True))


def test_a_frame_without_the_producer_token_is_refused_and_changes_nothing() -> None:
    run = runtime()
    with pytest.raises(StreamCorrupt, match=r"without the producer token"):
        read(run, frame(0, 999999, end=True, token=""))
    assert run.exports["total"].next_seq == 0
    assert read(run, frame(0, 4, end=True)) == ['{"value":"4"}']


def test_a_frame_of_another_typename_fails_naming_both() -> None:
    with pytest.raises(
        StreamCorrupt,
        match=r"^export total \(from n.total\): a frame of dagyo.types.Text arrived on a "
        r"stream of dagyo.types.Int64$",
    ):
        read(runtime(), frame(0, typename="dagyo.types.Text"))


def test_a_frame_of_too_many_items_is_refused_before_its_items_are_decoded() -> None:
    body = Frame(
        items=[b""] * (FRAME_MAX_ITEMS + 1), typename=INT64, token=TOKEN
    ).SerializeToString()
    with pytest.raises(StreamCorrupt, match=f"more than {FRAME_MAX_ITEMS} items"):
        read(runtime(), body)
