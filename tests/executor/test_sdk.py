"""The progdef SDK in both styles, run through the embedded runner."""

from __future__ import annotations

from pathlib import Path

import pytest

from executor._runtime.inbox import Inbox
from executor.core.errors import DecodeError
from executor.core.types import Text
from executor.inputs import InputStream
from tests.embedded import TEXT, catalogue_with, make_progdef, run_flow, source


def test_function_style_init_secrets_and_many_items(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOUT_SUFFIX", "!")
    make_progdef(
        tmp_path,
        "shout",
        """
        from executor.core.types import Text
        calls = []

        def init(ctx):
            calls.append("init")
            ctx.suffix = ctx.secrets["SHOUT_SUFFIX"]
            ctx.logger.info("ready")

        def handler(ctx, item):
            return [Text(text=item.text.upper() + ctx.suffix), Text(text=str(len(calls)))]
        """,
        inputs={"items": TEXT},
        outputs={"loud": TEXT},
        run="main:handler",
        init="main:init",
        style="function",
        secrets=["SHOUT_SUFFIX"],
    )
    exports, result = run_flow(
        {
            "name": "shouting",
            "nodes": {"s": {"progdef": "source"}, "x": {"progdef": "shout"}},
            "edges": [{"from": "s.src", "to": "x.items"}],
            "consts": [{"to": "s.count", **source(2)}],
            "exports": {"loud": "x.loud"},
        },
        catalogue=catalogue_with(tmp_path),
    )
    assert result.state == "succeeded", result.failure
    assert exports["loud"] == [
        {"text": "NAME-0!"},
        {"text": "1"},
        {"text": "NAME-1!"},
        {"text": "1"},
    ]


def test_a_missing_secret_panics_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    make_progdef(
        tmp_path,
        "needy",
        "def handler(ctx, item):\n    return item\n",
        inputs={"items": TEXT},
        outputs={"items": TEXT},
        run="main:handler",
        style="function",
        secrets=["NOT_SET_ANYWHERE"],
    )
    _, result = run_flow(
        {
            "name": "needy",
            "nodes": {"n": {"progdef": "needy"}},
            "consts": [{"to": "n.items", "values": [{"text": "a"}]}],
            "exports": {"out": "n.items"},
        },
        catalogue=catalogue_with(tmp_path),
    )
    assert result.state == "failed"
    assert result.failure is not None
    assert "secret NOT_SET_ANYWHERE is not set" in result.failure.error


FLAKY = """
    from executor.core.types import Text
    failures = {}

    def handler(ctx, item):
        seen = failures.get(item.text, 0)
        if seen < 2:
            failures[item.text] = seen + 1
            raise ConnectionError(f"flaky on {item.text} (try {seen + 1})")
        return item
    """


@pytest.mark.parametrize(("attempts", "state"), [(3, "succeeded"), (2, "failed")])
def test_function_style_retries_an_item_before_it_panics(
    tmp_path: Path, attempts: int, state: str
) -> None:
    make_progdef(
        tmp_path,
        "flaky",
        FLAKY,
        inputs={"items": TEXT},
        outputs={"items": TEXT},
        run="main:handler",
        style="function",
        retries={"attempts": attempts, "backoff_ms": 1},
    )
    exports, result = run_flow(
        {
            "name": "flaky",
            "nodes": {"f": {"progdef": "flaky"}},
            "consts": [{"to": "f.items", "values": [{"text": "a"}, {"text": "b"}]}],
            "exports": {"out": "f.items"},
        },
        catalogue=catalogue_with(tmp_path),
    )
    assert result.state == state
    if state == "succeeded":
        assert exports["out"] == [{"text": "a"}, {"text": "b"}]
    else:
        assert result.failure is not None
        assert result.failure.error == "ConnectionError: flaky on a (try 2)"
        assert "raise ConnectionError" in result.failure.traceback


def test_stream_style_merge_keeps_each_inputs_order(tmp_path: Path) -> None:
    make_progdef(
        tmp_path,
        "interleave",
        """
        from executor.core.types import Text

        def run(job):
            for port, item in job.merge("a", "b"):
                job.outputs["out"].send(Text(text=f"{port}:{item.text}"))
        """,
        inputs={"a": TEXT, "b": TEXT},
        outputs={"out": TEXT},
        run="main:run",
    )
    exports, result = run_flow(
        {
            "name": "merging",
            "nodes": {
                "x": {"progdef": "source"},
                "y": {"progdef": "source"},
                "m": {"progdef": "interleave"},
            },
            "edges": [{"from": "x.src", "to": "m.a"}, {"from": "y.src", "to": "m.b"}],
            "consts": [{"to": "x.count", **source(3000)}, {"to": "y.count", **source(2000)}],
            "exports": {"out": "m.out"},
        },
        catalogue=catalogue_with(tmp_path),
    )
    assert result.state == "succeeded"
    items = [e["text"] for e in exports["out"]]
    assert [i for i in items if i.startswith("a:")] == [f"a:name-{i}" for i in range(3000)]
    assert [i for i in items if i.startswith("b:")] == [f"b:name-{i}" for i in range(2000)]


def test_stop_surfaces_inside_run_as_stopped(tmp_path: Path) -> None:
    marker = tmp_path / "cleaned-up"
    make_progdef(
        tmp_path,
        "tidy",
        f"""
        from executor import Stopped

        def run(job):
            try:
                for item in job.inputs["items"]:
                    job.sleep(0.05)
            except Stopped:
                open({str(marker)!r}, "w").write("stopped")
                raise
        """,
        inputs={"items": TEXT},
        outputs={},
        run="main:run",
    )
    _, result = run_flow(
        {
            "name": "stopping",
            "nodes": {
                "s": {"progdef": "source"},
                "t": {"progdef": "tidy"},
                "x": {"progdef": "explode"},
                "v": {"progdef": "void_sink"},
            },
            "edges": [{"from": "s.src", "to": "t.items"}, {"from": "x.items", "to": "v.sink"}],
            "consts": [
                {"to": "s.count", **source(100)},
                {"to": "x.items", "values": [{"text": "panic"}]},
            ],
        },
        catalogue=catalogue_with(tmp_path),
    )
    assert result.state == "failed"
    assert result.failure is not None and result.failure.node == "x"
    assert marker.read_text() == "stopped"


def test_sending_the_wrong_type_panics_naming_the_port(tmp_path: Path) -> None:
    make_progdef(
        tmp_path,
        "liar",
        """
        from executor.core.types import Int64

        def run(job):
            job.outputs["out"].send(Int64(value=1))
        """,
        inputs={},
        outputs={"out": TEXT},
        run="main:run",
    )
    _, result = run_flow(
        {
            "name": "lying",
            "nodes": {"l": {"progdef": "liar"}},
            "exports": {"out": "l.out"},
        },
        catalogue=catalogue_with(tmp_path),
    )
    assert result.state == "failed"
    assert result.failure is not None
    assert result.failure.error == (
        "TypeMismatch: l.out sends dagyo.types.Text but got dagyo.types.Int64: send a Text"
    )


def test_returning_early_still_lets_the_producer_finish(tmp_path: Path) -> None:
    make_progdef(
        tmp_path,
        "first",
        """
        def run(job):
            for item in job.inputs["items"]:
                job.outputs["out"].send(item)
                return
        """,
        inputs={"items": TEXT},
        outputs={"out": TEXT},
        run="main:run",
    )
    exports, result = run_flow(
        {
            "name": "first-only",
            "nodes": {"s": {"progdef": "source"}, "f": {"progdef": "first"}},
            "edges": [{"from": "s.src", "to": "f.items"}],
            "consts": [{"to": "s.count", **source(50_000)}],
            "exports": {"out": "f.out"},
        },
        catalogue=catalogue_with(tmp_path),
    )
    assert result.state == "succeeded"
    assert exports["out"] == [{"text": "name-0"}]
    assert result.items_sent["s.src"] == 50_000


def test_an_item_that_does_not_decode_names_the_edge() -> None:
    import threading

    from executor.pb.dagyo.v1.frame_pb2 import Frame

    inbox = Inbox(threading.Event())
    inbox.add_port("name")
    stream = InputStream(port="name", edge="names.src -> hi.name", message_class=Text, inbox=inbox)
    inbox.put("name", Frame(items=[b"\xff\xff\xff"], end_of_stream=True).SerializeToString())
    with pytest.raises(
        DecodeError,
        match=r"stream names.src -> hi.name: an item does not "
        r"decode as dagyo.types.Text",
    ):
        list(stream)
    inbox.put("name", b"\x0a\xff")
    with pytest.raises(DecodeError, match="received a malformed frame"):
        InputStream(port="name", edge="e", message_class=Text, inbox=inbox).next_batch()
