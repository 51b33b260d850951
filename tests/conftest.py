"""Fixtures shared by the whole suite: the repository paths and a real RabbitMQ."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.waiting import eventually

# The tests start executors with subprocess.Popen from a process with live gRPC channels and
# servers; with gRPC's fork handlers on, the child can die before it execs (grpc/grpc#43055:
# "epoll_wait error: Bad file descriptor"). Set before anything imports grpc.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

ROOT = Path(__file__).resolve().parent.parent
PROGDEFS = ROOT / "progdefs"
EXAMPLES = ROOT / "examples"
NODE_SDK = ROOT / "sdks" / "js"

HOW_TO_START = (
    "no RabbitMQ for the tests: start one (`rabbitmq-server -detached`, or "
    "`docker run -d -p 5672:5672 rabbitmq:3`), or set DAGYO_TEST_AMQP_URL to an amqp:// URL"
)


# Workers for the whole suite under pytest-xdist (`-n auto`, the default in pyproject.toml):
# its cluster tests mostly wait on the broker and on executor processes, so more workers
# than two cores pay (DEVELOPERS.md has the measurements).
SUITE_WORKERS = 4


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """SUITE_WORKERS for the whole suite; none (one process) when tests are named, where
    starting workers costs more than it saves. ``-n N`` on the command line wins."""
    suite = ROOT / "tests"
    named = [arg for arg in config.args if Path(arg.split("::")[0]).resolve() != suite]
    return 0 if named else SUITE_WORKERS


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On xdist workers: the tests of a module that share a module-scoped fixture (its
    cluster, a private broker node) form one group, run by one worker that starts the
    fixture once; and the slow tests come first, so that each worker, taking the next test
    as it is free, starts the longest ones early instead of ending the run on one of them."""
    if not hasattr(config, "workerinput"):
        return
    for item in items:
        fixtures = getattr(item, "_fixtureinfo", None)
        if fixtures is not None and any(
            definitions[-1].scope == "module" for definitions in fixtures.name2fixturedefs.values()
        ):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_addoption(parser: pytest.Parser) -> None:
    # Here, not in tests/conformance/conftest.py: a plain `python -m pytest` loads that one
    # too late to add options (tests/conformance/README.md).
    group = parser.getgroup("conformance", "the executor conformance suite (tests/conformance)")
    group.addoption(
        "--executor-command",
        default="",
        help="the executor to hold to docs/protocol.md, {progdef} standing for a progdef "
        "folder [python -m executor {progdef}]",
    )
    group.addoption(
        "--runtime",
        default="",
        choices=["", "python", "node"],
        help="which of tests/conformance/progdefs/RUNTIME the executor runs [inferred from "
        "--executor-command: node for a node command or a .js file, else python]",
    )


def _reachable(url: str) -> bool:
    """True when something accepts connections at the URL's host and port.

    A refusal is an answer at once; a connection that does not complete (a broker busy with
    the other xdist workers' connections at their start) is tried again.
    """
    parts = urllib.parse.urlsplit(url)
    address = (parts.hostname or "localhost", parts.port or 5672)

    def answer() -> bool | None:
        try:
            with socket.create_connection(address, 5):
                return True
        except (ConnectionRefusedError, socket.gaierror):
            return False
        except OSError:
            return None  # no answer yet

    reached = eventually(answer, 60, until=lambda a: a is not None, what=f"an answer from {url}")
    return bool(reached)


def _node_sdk_installed() -> bool:
    return (NODE_SDK / "node_modules").is_dir() and (NODE_SDK / "dist" / "main.js").is_file()


def _node_sdk_built() -> bool:
    """Whether sdks/js/dist is compiled from its sources as they are now: a build older than
    any source (a checkout, a rebase, an edit) would run code the suite is not testing."""
    built = [path.stat().st_mtime for path in (NODE_SDK / "dist").rglob("*.js")]
    sources = [path.stat().st_mtime for path in (NODE_SDK / "src").rglob("*")]
    sources.append((NODE_SDK / "tsconfig.json").stat().st_mtime)
    return bool(built) and min(built) >= max(sources)


@pytest.fixture(scope="session", autouse=True)
def _install_node_sdk() -> None:
    """Install the JavaScript executor SDK (`npm ci`, which builds it) once, when it is not,
    and build it again when its sources are newer than its build: the sample catalogue's
    node progdefs need it. Without npm, the tests that need it fail through the
    ``node_sdk`` fixture, saying so."""
    if (_node_sdk_installed() and _node_sdk_built()) or shutil.which("npm") is None:
        return
    import fcntl

    with open(NODE_SDK / "package.json") as lock:  # one install for every xdist worker
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _node_sdk_installed():
            command = ["npm", "ci", "--no-audit", "--no-fund"]
        elif not _node_sdk_built():
            command = ["npm", "run", "build"]
        else:
            return
        done = subprocess.run(command, cwd=NODE_SDK, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            pytest.fail(f"`{' '.join(command)}` in sdks/js failed:\n{done.stdout}{done.stderr}")


@pytest.fixture(scope="session")
def node_sdk() -> Path:
    """The installed JavaScript executor SDK (sdks/js)."""
    if shutil.which("node") is None or not _node_sdk_installed():
        pytest.fail(
            "the JavaScript executor SDK is not installed: install Node.js 20 or newer with "
            "npm, then run `npm ci` in sdks/js"
        )
    return NODE_SDK


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """A reachable RabbitMQ: DAGYO_TEST_AMQP_URL, else localhost:5672, else a container.

    Fails (never skips) when none can be had, saying how to start one.
    """
    url = os.environ.get("DAGYO_TEST_AMQP_URL")
    if url:
        if not _reachable(url):
            pytest.fail(f"DAGYO_TEST_AMQP_URL={url} is not reachable; {HOW_TO_START}")
        yield url
        return
    local = "amqp://guest:guest@localhost:5672/%2F"
    if _reachable(local):
        yield local
        return
    try:
        from testcontainers.rabbitmq import RabbitMqContainer

        container = RabbitMqContainer("rabbitmq:3.13")
        container.start()
    except Exception as e:  # no Docker either
        pytest.fail(f"{HOW_TO_START} ({type(e).__name__}: {e})")
    try:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(5672)
        yield f"amqp://guest:guest@{host}:{port}/%2F"
    finally:
        container.stop()


@pytest.fixture(scope="session")
def broker_url(amqp_url: str) -> Iterator[str]:
    """amqp_url on a vhost of the suite's own, when rabbitmqctl can make one.

    A vhost of its own keeps the suite's schedulers and a `dagyo up` (or another test run)
    on the same broker from competing for the scheduler's events queue.
    """
    parts = urllib.parse.urlsplit(amqp_url)
    vhost = f"dagyo-test-{uuid.uuid4().hex[:8]}"
    if parts.hostname not in ("localhost", "127.0.0.1") or not shutil.which("rabbitmqctl"):
        yield amqp_url
        return
    try:
        # rabbitmqctl now and then fails to reach its node while other clients of it run.
        user = parts.username or "guest"
        eventually(lambda: _add_vhost(vhost, user), 30, ignoring=(subprocess.SubprocessError,))
    except (subprocess.SubprocessError, OSError, AssertionError):
        yield amqp_url
        return
    try:
        yield urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(vhost, "")))
    finally:
        rabbitmqctl("delete_vhost", vhost)


def _add_vhost(vhost: str, user: str) -> bool:
    """Add a vhost ``user`` may use; True once done (a failed attempt may have added it)."""
    try:
        rabbitmqctl("add_vhost", vhost)
    except subprocess.SubprocessError:
        if vhost not in rabbitmqctl("list_vhosts", "-q", "--no-table-headers").split():
            raise
    rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    return True


def rabbitmqctl(*args: str) -> str:
    """Run rabbitmqctl (the broker's own tool) and return what it printed."""
    return subprocess.run(
        ["rabbitmqctl", *args], check=True, capture_output=True, text=True, timeout=60
    ).stdout


def queue_messages(url: str, queue: str) -> int:
    """Messages in a queue of the vhost of ``url``, waiting or delivered and not yet acked
    (rabbitmqctl; a passive declare counts only the waiting ones); 0 when it is gone."""
    output = rabbitmqctl(
        "list_queues", "-p", vhost_of(url), "-q", "--no-table-headers", "name", "messages"
    )
    counts = dict(line.split("\t") for line in output.splitlines() if "\t" in line)
    return int(counts.get(queue, 0))


def vhost_of(url: str) -> str:
    """The vhost an amqp:// URL names (``/`` when it names none)."""
    path = urllib.parse.urlsplit(url).path.lstrip("/")
    return urllib.parse.unquote(path) or "/"


@pytest.fixture(autouse=True)
def _own_cache_folder(tmp_path_factory: pytest.TempPathFactory, monkeypatch: Any) -> None:
    """Every test's `dagyo run` starts with an empty cache folder of its own, so no result
    cached by another test (or by the user) is replayed in its place."""
    monkeypatch.setenv("DAGYO_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
