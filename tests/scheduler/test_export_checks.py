"""How the scheduler judges an export frame's typename and place in its stream."""

from __future__ import annotations

import pytest

from executor.errors import StreamCorrupt
from executor.pb.dagyo.v1.frame_pb2 import Frame
from scheduler.service.exports import check_frame

INT64 = "dagyo.types.Int64"


def check(frame: Frame, next_seq: int, *, ended: bool = False) -> None:
    check_frame(frame, INT64, next_seq, ended=ended, export="total", source="n.total")


def test_the_next_frame_and_one_delivered_again_pass() -> None:
    check(Frame(seq=3, typename=INT64), 3)
    check(Frame(seq=1, typename=INT64), 3)  # below the position: kept already, skipped
    check(Frame(seq=1, typename=INT64), 3, ended=True)


def test_a_frame_after_end_of_stream_fails_naming_the_export() -> None:
    with pytest.raises(
        StreamCorrupt, match=r"^export total \(from n.total\): frame 3 after end-of-stream$"
    ):
        check(Frame(seq=3, typename=INT64), 3, ended=True)


def test_a_frame_of_another_typename_fails_naming_both() -> None:
    with pytest.raises(
        StreamCorrupt,
        match=r"^export total \(from n.total\): a frame of dagyo.types.Text arrived on a "
        r"stream of dagyo.types.Int64$",
    ):
        check(Frame(seq=0, typename="dagyo.types.Text"), 0)
