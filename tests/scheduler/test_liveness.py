"""Liveness: when executors and their mailboxes count as alive, and when nobody is judged."""

from __future__ import annotations

from scheduler.service.liveness import Liveness


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_silent_executor_is_lost_only_after_the_timeout() -> None:
    clock = Clock()
    liveness = Liveness(15.0, clock=clock)
    liveness.heard("greet-1")
    clock.now += 15.0
    assert liveness.lost("greet-1") is None
    clock.now += 0.5
    assert liveness.lost("greet-1") == (
        "job lost: executor greet-1 sent no heartbeat for 15.5 s (timeout 15 s); it was "
        "killed, ran out of memory or lost its node"
    )


def test_any_sign_of_life_of_an_executor_keeps_its_mailbox_served() -> None:
    clock = Clock()
    liveness = Liveness(15.0, clock=clock)
    liveness.serving("greet-1", "dagyo.mailbox.greet.v1", draining=False)
    clock.now += 14.0
    liveness.heard("greet-1")  # a job event, not a heartbeat
    clock.now += 14.0
    assert liveness.serves("dagyo.mailbox.greet.v1")
    clock.now += 2.0
    assert not liveness.serves("dagyo.mailbox.greet.v1")
    assert not liveness.serves("dagyo.mailbox.other.v1")


def test_a_draining_executor_no_longer_serves_its_mailbox() -> None:
    clock = Clock()
    liveness = Liveness(15.0, clock=clock)
    liveness.serving("greet-1", "dagyo.mailbox.greet.v1", draining=False)
    clock.now += 16.0
    liveness.serving("greet-1", "dagyo.mailbox.greet.v1", draining=True)
    liveness.heard("greet-1")
    assert not liveness.serves("dagyo.mailbox.greet.v1")


def test_nobody_is_judged_while_events_wait_unread_and_silence_restarts_after() -> None:
    clock = Clock()
    liveness = Liveness(15.0, clock=clock)
    clock.now += 20.0  # past the start-up grace
    liveness.heard("greet-1")
    liveness.behind(True)
    clock.now += 60.0
    assert liveness.lost("greet-1") is None
    assert liveness.serves("dagyo.mailbox.greet.v1", since_resume=True)
    liveness.behind(False)  # caught up: silence counts from now
    clock.now += 10.0
    assert liveness.lost("greet-1") is None
    assert liveness.serves("dagyo.mailbox.greet.v1", since_resume=True)
    clock.now += 6.0
    assert liveness.lost("greet-1") is not None
    assert not liveness.serves("dagyo.mailbox.greet.v1", since_resume=True)
