"""Async progdefs and ``"concurrency": N``: items of one job in flight at once, results in
input order, retries, the error port, panics and stops per item, alike embedded and on a
cluster executor."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from executor.core.errors import InitFailed
from executor.core.progdef import load_catalogue
from tests.cluster import LocalCluster, state_of
from tests.commands import dagyo_bare
from tests.conftest import PROGDEFS
from tests.embedded import TEXT, make_progdef, run_flow, source
from tests.waiting import eventually

pytestmark = pytest.mark.slow

# Every handler here holds its first items until GATE of them are in flight at once, so a
# job running its items one at a time never gets past the first one (it panics after
# WAIT_S, naming the wait, instead of hanging the test).
GATE = 8
WAIT_S = 60

FETCH = f"""
    import asyncio
    import random
    from executor.types import Text

    started = 0
    gate = None

    async def init(ctx):
        await asyncio.sleep(0)
        ctx.suffix = "!"

    async def handler(ctx, item):
        global started, gate
        if gate is None:
            gate = asyncio.Event()
        started += 1
        if started >= {GATE}:
            gate.set()
        await asyncio.wait_for(gate.wait(), {WAIT_S})
        await asyncio.sleep(random.uniform(0, 0.02))
        return Text(text=item.text.upper() + ctx.suffix)
    """

THREADED = f"""
    import random
    import threading
    import time
    from executor.types import Text

    lock = threading.Lock()
    started = 0
    gate = threading.Event()

    def handler(ctx, item):
        global started
        with lock:
            started += 1
            if started >= {GATE}:
                gate.set()
        if not gate.wait({WAIT_S}):
            raise TimeoutError("items ran one at a time")
        time.sleep(random.uniform(0, 0.01))
        return Text(text=item.text.upper())
    """

# Returns each item with how many items were in flight when it started.
WINDOW = f"""
    import asyncio
    import random
    from executor.types import Text

    in_flight = 0
    started = 0
    gate = None

    async def handler(ctx, item):
        global in_flight, started, gate
        if gate is None:
            gate = asyncio.Event()
        in_flight += 1
        started += 1
        seen = in_flight
        if started >= 5:
            gate.set()
        try:
            await asyncio.wait_for(gate.wait(), {WAIT_S})
            await asyncio.sleep(random.uniform(0, 0.005))
        finally:
            in_flight -= 1
        return Text(text=f"{{item.text}}:{{seen}}")
    """

CAREFUL = """
    import asyncio
    import random
    from executor.types import Text

    tries = {}

    async def handler(ctx, item):
        await asyncio.sleep(random.uniform(0, 0.02))
        tries[item.text] = tries.get(item.text, 0) + 1
        if item.text.startswith("flaky") and tries[item.text] == 1:
            raise ConnectionError(f"flaky on {item.text}")
        if item.text.startswith("bad"):
            raise ValueError(f"rejected {item.text}")
        return item
    """

FRAGILE = """
    import asyncio
    from executor.types import Text

    def item_panic(text):
        raise RuntimeError(f"asked to panic on {text}")

    async def handler(ctx, item):
        if item.text == "panic":
            await asyncio.sleep(0.2)
            item_panic(item.text)
        return item
    """

PATIENT = """
    import asyncio
    from pathlib import Path

    HERE = Path(__file__).parent

    async def handler(ctx, item):
        (HERE / "started").write_text("yes")
        try:
            await asyncio.sleep(600)
        except asyncio.CancelledError:
            (HERE / "cancelled").write_text("cleaned up")
            raise
    """

DAWDLE = """
    import asyncio
    from pathlib import Path

    HERE = Path(__file__).parent

    async def run(job):
        async for item in job.inputs["items"]:
            (HERE / "started").write_text("yes")
            try:
                await asyncio.sleep(600)
            except asyncio.CancelledError:
                (HERE / "cancelled").write_text("cleaned up")
                raise
    """

# Panics once the progdef its item names has written its "started" marker.
TRIGGER = """
    from pathlib import Path

    def run(job):
        for item in job.inputs["go"]:
            started = Path(__file__).parent.parent / item.text / "started"
            while not started.exists():
                job.sleep(0.02)
            raise RuntimeError(f"stopping the flow while {item.text} waits")
    """

RELAY = """
    import asyncio
    from executor.types import Text

    async def run(job):
        out = job.outputs["out"]
        async for item in job.inputs["items"]:
            await asyncio.sleep(0)
            await out.asend(Text(text=item.text + "?"))
    """


def _write_progdefs(root: Path) -> None:
    function = {"inputs": {"items": TEXT}, "outputs": {"out": TEXT}, "style": "function"}
    make_progdef(
        root, "fetch", FETCH, run="main:handler", init="main:init", concurrency=64, **function
    )
    make_progdef(root, "window", WINDOW, run="main:handler", concurrency=5, **function)
    make_progdef(root, "threaded", THREADED, run="main:handler", concurrency=GATE, **function)
    make_progdef(
        root,
        "careful",
        CAREFUL,
        run="main:handler",
        concurrency=GATE,
        style="function",
        inputs={"items": TEXT},
        outputs={"out": TEXT, "errors": "dagyo.types.Error"},
        errors="errors",
        retries={"attempts": 3, "backoff_ms": 1},
    )
    make_progdef(root, "fragile", FRAGILE, run="main:handler", concurrency=GATE, **function)
    make_progdef(
        root,
        "patient",
        PATIENT,
        run="main:handler",
        concurrency=4,
        style="function",
        inputs={"items": TEXT},
        outputs={},
    )
    make_progdef(root, "dawdle", DAWDLE, run="main:run", inputs={"items": TEXT}, outputs={})
    make_progdef(root, "trigger", TRIGGER, run="main:run", inputs={"go": TEXT}, outputs={})
    make_progdef(
        root, "relay", RELAY, run="main:run", inputs={"items": TEXT}, outputs={"out": TEXT}
    )


@pytest.fixture(scope="module")
def progdefs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("async-progdefs")
    _write_progdefs(root)
    return root


@pytest.fixture(scope="module")
def cluster(
    broker_url: str, progdefs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        broker_url, tmp_path_factory.mktemp("async-cluster"), names=("source",), custom=progdefs
    ).start()
    yield cluster
    cluster.close()


class Runner:
    """Runs a flow embedded (``memory``) or on the module's cluster (``rabbitmq``)."""

    def __init__(self, transport: str, progdefs: Path, request: pytest.FixtureRequest) -> None:
        self.transport = transport
        self.cluster: LocalCluster | None = None
        if transport == "rabbitmq":
            self.cluster = request.getfixturevalue("cluster")
            self.folder = self.cluster.catalogue_dir
        else:
            self.folder = progdefs

    def run(self, flow: dict[str, Any]) -> tuple[str, dict[str, list[Any]], str, str]:
        """(state, exports, failure error, failure traceback)."""
        if self.cluster is None:
            catalogue = {**load_catalogue(PROGDEFS), **load_catalogue(self.folder)}
            exports, result = run_flow(flow, catalogue=catalogue)
            failure = result.failure
            error = failure.error if failure is not None else ""
            trace = failure.traceback if failure is not None else ""
            return result.state, exports, error, trace
        record, exports = self.cluster.run(flow, timeout_s=120)
        assert self.cluster.flow_queues(record.id) == [], "a finished flow left queues behind"
        return state_of(record), exports, record.failure.error, record.failure.traceback


@pytest.fixture(params=["memory", "rabbitmq"])
def runner(request: pytest.FixtureRequest, progdefs: Path) -> Runner:
    return Runner(request.param, progdefs, request)


def _texts(*texts: str) -> list[dict[str, str]]:
    return [{"text": t} for t in texts]


def _through(progdef: str, count: int, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "nodes": {"s": {"progdef": "source"}, "x": {"progdef": progdef}},
        "edges": [{"from": "s.src", "to": "x.items"}],
        "consts": [{"to": "s.count", **source(count)}],
        "exports": {"out": "x.out"},
    }


def test_an_async_handler_runs_items_at_once_and_sends_them_in_input_order(
    runner: Runner,
) -> None:
    state, exports, error, _ = runner.run(_through("fetch", 600, "fetching"))
    assert state == "succeeded", error
    assert exports["out"] == _texts(*(f"NAME-{i}!" for i in range(600)))


def test_no_more_items_than_the_concurrency_are_in_flight(runner: Runner) -> None:
    state, exports, error, _ = runner.run(_through("window", 200, "windowing"))
    assert state == "succeeded", error
    items, seen = zip(*(e["text"].split(":") for e in exports["out"]), strict=True)
    assert list(items) == [f"name-{i}" for i in range(200)]
    assert max(map(int, seen)) == 5  # the first five wait for each other: exactly five


def test_a_plain_handler_with_concurrency_runs_on_threads_in_input_order(runner: Runner) -> None:
    state, exports, error, _ = runner.run(_through("threaded", 300, "threading"))
    assert state == "succeeded", error
    assert exports["out"] == _texts(*(f"NAME-{i}" for i in range(300)))


def test_retries_and_the_error_port_are_per_item_under_concurrency(runner: Runner) -> None:
    texts = [
        f"flaky-{i}" if i % 7 == 0 else f"bad-{i}" if i % 5 == 0 else f"ok-{i}" for i in range(60)
    ]
    flow = {
        "name": "careful",
        "nodes": {"c": {"progdef": "careful"}},
        "consts": [{"to": "c.items", "values": _texts(*texts)}],
        "exports": {"out": "c.out", "errors": "c.errors"},
    }
    state, exports, error, _ = runner.run(flow)
    assert state == "succeeded", error
    assert exports["out"] == _texts(*(t for t in texts if not t.startswith("bad")))
    bad = [t for t in texts if t.startswith("bad")]
    # In input order too (each error names its item).
    assert [e["error"] for e in exports["errors"]] == [f"ValueError: rejected {t}" for t in bad]
    assert {e["attempts"] for e in exports["errors"]} == {3}
    assert all("raise ValueError" in e["traceback"] for e in exports["errors"])


def test_a_panic_under_concurrency_names_its_item_and_holds_later_items_back(
    runner: Runner,
) -> None:
    texts = ["a", "b", "panic", *(f"after-{i}" for i in range(30))]
    flow = {
        "name": "fragile",
        "nodes": {"f": {"progdef": "fragile"}},
        "consts": [{"to": "f.items", "values": _texts(*texts)}],
        "exports": {"out": "f.out"},
    }
    state, exports, error, trace = runner.run(flow)
    assert state == "failed"
    assert error == "RuntimeError: asked to panic on panic"
    assert "item_panic" in trace and "raise RuntimeError" in trace
    sent = [e["text"] for e in exports.get("out", [])]
    assert sent == ["a", "b"][: len(sent)], "an item after the panic was sent"


@pytest.mark.parametrize("progdef", ["patient", "dawdle"])
def test_a_stop_cancels_the_coroutines_in_flight(runner: Runner, progdef: str) -> None:
    folder = runner.folder / progdef
    for marker in ("started", "cancelled"):
        (folder / marker).unlink(missing_ok=True)
    flow = {
        "name": "stopping",
        "nodes": {"p": {"progdef": progdef}, "t": {"progdef": "trigger"}},
        "consts": [
            {"to": "p.items", "values": _texts(*(f"wait-{i}" for i in range(10)))},
            {"to": "t.go", "values": _texts(progdef)},
        ],
    }
    state, _, error, _ = runner.run(flow)
    assert state == "failed"
    assert f"stopping the flow while {progdef} waits" in error
    cancelled = folder / "cancelled"
    eventually(cancelled.exists, what="the in-flight items cancelled, their cleanup run")
    assert cancelled.read_text() == "cleaned up"


def test_an_async_run_reads_with_async_for_and_sends_with_asend(runner: Runner) -> None:
    state, exports, error, _ = runner.run(_through("relay", 3000, "relaying"))
    assert state == "succeeded", error
    assert exports["out"] == _texts(*(f"name-{i}?" for i in range(3000)))


def test_an_async_init_that_fails_names_the_progdef(tmp_path: Path) -> None:
    make_progdef(
        tmp_path,
        "broken_init",
        """
        async def init(ctx):
            raise OSError("no model here")

        async def handler(ctx, item):
            return item
        """,
        inputs={"items": TEXT},
        outputs={"out": TEXT},
        run="main:handler",
        init="main:init",
        style="function",
    )
    catalogue = {**load_catalogue(PROGDEFS), **load_catalogue(tmp_path)}
    flow = {
        "name": "broken",
        "nodes": {"b": {"progdef": "broken_init"}},
        "consts": [{"to": "b.items", "values": _texts("a")}],
        "exports": {"out": "b.out"},
    }
    with pytest.raises(InitFailed) as caught:
        run_flow(flow, catalogue=catalogue)
    assert "progdef broken_init: init failed: OSError: no model here" in str(caught.value)
    assert 'raise OSError("no model here")' in str(caught.value)  # the author's frame


def test_the_sample_fetch_like_answers_every_item_in_input_order() -> None:
    exports, result = run_flow(
        {
            "name": "fetching",
            "nodes": {"s": {"progdef": "source"}, "f": {"progdef": "fetch_like"}},
            "edges": [{"from": "s.src", "to": "f.url"}],
            "consts": [{"to": "s.count", **source(300)}],
            "exports": {"pages": "f.page"},
        }
    )
    assert result.state == "succeeded", result.failure
    assert exports["pages"] == _texts(*(f"fetched name-{i}" for i in range(300)))


def test_dagyo_invoke_local_runs_an_async_progdef_in_input_order() -> None:
    texts = [f"u{i}" for i in range(100)]
    done = dagyo_bare("invoke", "fetch_like", "--input", f"url={json.dumps(texts)}", "--local")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines == [{"output": "page", "value": {"text": f"fetched {t}"}} for t in texts]


def test_an_async_run_sends_a_failed_item_to_its_error_port_with_afail(tmp_path: Path) -> None:
    make_progdef(
        tmp_path,
        "picky",
        """
        from executor.types import Text

        async def run(job):
            async for item in job.inputs["items"]:
                if item.text.startswith("bad"):
                    await job.afail(item, ValueError(f"rejected {item.text}"))
                else:
                    await job.outputs["out"].asend_all([item, item])
        """,
        inputs={"items": TEXT},
        outputs={"out": TEXT, "errors": "dagyo.types.Error"},
        errors="errors",
        run="main:run",
    )
    catalogue = {**load_catalogue(PROGDEFS), **load_catalogue(tmp_path)}
    exports, result = run_flow(
        {
            "name": "picking",
            "nodes": {"p": {"progdef": "picky"}},
            "consts": [{"to": "p.items", "values": _texts("a", "bad-b", "c")}],
            "exports": {"out": "p.out", "errors": "p.errors"},
        },
        catalogue=catalogue,
    )
    assert result.state == "succeeded", result.failure
    assert exports["out"] == _texts("a", "a", "c", "c")
    assert [e["error"] for e in exports["errors"]] == ["ValueError: rejected bad-b"]


def test_a_wrapped_async_handler_seen_as_plain_is_a_clear_panic(tmp_path: Path) -> None:
    make_progdef(
        tmp_path,
        "wrapped",
        """
        import functools

        def logged(function):
            @functools.wraps(function)
            def wrapper(ctx, item):
                return function(ctx, item)
            return wrapper

        @logged
        async def handler(ctx, item):
            return item
        """,
        inputs={"items": TEXT},
        outputs={"out": TEXT},
        run="main:handler",
        style="function",
    )
    catalogue = {**load_catalogue(PROGDEFS), **load_catalogue(tmp_path)}
    _, result = run_flow(
        {
            "name": "wrapping",
            "nodes": {"w": {"progdef": "wrapped"}},
            "consts": [{"to": "w.items", "values": _texts("a")}],
            "exports": {"out": "w.out"},
        },
        catalogue=catalogue,
    )
    assert result.state == "failed"
    assert result.failure is not None
    assert "the handler returned a coroutine: define it with async def" in result.failure.error
