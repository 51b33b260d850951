"""A recorded output stream is held within its bounds: DAGYO_CACHE_MAX_BYTES for itself and
what is left of DAGYO_CACHE_BYTES for every recording the scheduler holds."""

from __future__ import annotations

from executor.core.constants import FRAME_MAX_ITEMS
from executor.pb.dagyo.v1.frame_pb2 import Frame
from scheduler.service.recording import Recording
from scheduler.service.replay import cached_items, frames


def test_items_are_held_in_order_as_the_store_keeps_them_and_replay_as_frames() -> None:
    recording = Recording()
    assert recording.add([b"a", b"bc"], limit=100, room=100) == 11
    assert recording.add([b""], limit=100, room=89) == 4
    data = b"".join(recording.chunks)
    assert (recording.items, recording.size, recording.dropped) == (3, 15, "")
    assert list(cached_items(data)) == [b"a", b"bc", b""]
    (frame,) = [Frame.FromString(f) for f in frames(data, typename="dagyo.types.Text", token="t")]
    assert list(frame.items) == [b"a", b"bc", b""]
    assert (frame.seq, frame.typename, frame.token, frame.end_of_stream) == (
        0,
        "dagyo.types.Text",
        "t",
        True,
    )


def test_a_stream_past_its_bound_or_the_room_left_is_dropped_saying_which() -> None:
    past_its_own = Recording()
    past_its_own.add([b"x" * 10], limit=100, room=1000)
    assert past_its_own.add([b"x" * 90], limit=100, room=1000) == -14
    assert past_its_own.dropped == "past DAGYO_CACHE_MAX_BYTES (100 bytes)"
    assert (past_its_own.chunks, past_its_own.size) == ([], 0)
    no_room = Recording()
    assert no_room.add([b"x" * 10], limit=100, room=5) == 0
    assert no_room.dropped == "the scheduler holds DAGYO_CACHE_BYTES of recordings already"


def test_a_long_replayed_stream_is_cut_into_frames_as_a_producer_cuts_them() -> None:
    recording = Recording()
    recording.add([b"%05d" % n for n in range(20_000)], limit=1 << 20, room=1 << 20)
    sent = [Frame.FromString(f) for f in frames(b"".join(recording.chunks), typename="T", token="")]
    assert [f.seq for f in sent] == list(range(len(sent))) and len(sent) > 2
    assert [f.end_of_stream for f in sent] == [False] * (len(sent) - 1) + [True]
    assert all(len(f.items) <= FRAME_MAX_ITEMS for f in sent)
    assert [item for f in sent for item in f.items] == [b"%05d" % n for n in range(20_000)]
