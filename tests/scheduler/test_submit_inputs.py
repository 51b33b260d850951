"""Flow JSON and ``--set`` that once crashed Submit: each is a problem naming its place, exit 2."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result

from executor.core.progdef import load_catalogue
from scheduler.service.auth import Authenticator
from scheduler.service.store import SqliteStore
from scheduler.service.trigger_firing import Firing
from scheduler.service.triggers import load_triggers
from tests.commands import dagyo_at
from tests.conftest import PROGDEFS
from tests.scheduler.fake_executor import FLOW, Client
from tests.scheduler.trigger_files import write_triggers

DEEP = "[" * 100_000 + "]" * 100_000


def submit(client: Client, tmp_path: Path, text: str, *sets: str) -> Result:
    path = tmp_path / "flow.json"
    path.write_text(text)
    options = [arg for option in sets for arg in ("--set", option)]
    return dagyo_at(client.scheduler.address, "flow", "submit", str(path), *options)


@pytest.mark.parametrize(
    ("text", "sets", "place"),
    [
        (
            json.dumps(dict(FLOW, name="\ud800")),
            (),
            'name: the text "\\ud800" holds a lone surrogate',
        ),
        (
            json.dumps(dict(FLOW, consts=[{"to": "a.n", "values": ["\ud800"]}])),
            (),
            "consts[0].values[0]: the text",
        ),
        (json.dumps(dict(FLOW, exports={"\udc80": "b.text"})), (), 'exports: the key "\\udc80"'),
        (json.dumps(FLOW), ('b.text="\\ud800"',), "--set b.text"),
        (DEEP, ("a.n=3",), "nested"),
        (json.dumps(FLOW), ("a.n=" + DEEP,), "nested"),
    ],
    ids=["name", "const", "key", "set", "deep-with-set", "deep-set"],
)
def test_a_lone_surrogate_or_deep_nesting_is_a_problem_and_exit_2(
    client: Client, tmp_path: Path, text: str, sets: tuple[str, ...], place: str
) -> None:
    result = submit(client, tmp_path, text, *sets)
    assert result.exit_code == 2, result.output
    assert place in result.stderr, result.stderr
    assert "Exception calling application" not in result.stderr


def test_set_on_the_scheduler_refuses_a_key_given_twice_as_validate_does(
    client: Client, tmp_path: Path
) -> None:
    text = json.dumps(FLOW)[:-1] + ', "name": "again"}'
    result = submit(client, tmp_path, text, "a.n=3")
    assert result.exit_code == 2, result.output
    assert "key 'name' appears twice in one object" in result.stderr


@pytest.fixture
def trigger_url(tmp_path: Path) -> Iterator[str]:
    """The HTTP endpoint of the on-upload trigger (greet a key), its flows never started."""
    from scheduler.service.trigger_sources import HttpSource

    triggers, _ = load_triggers(write_triggers(tmp_path / "triggers"), tenant_required=False)
    authenticator = Authenticator(None)
    firing = Firing(
        triggers=triggers,
        invalid=[],
        submit=lambda principal, flow_json, *, source, sets: "started",
        catalogue=lambda: load_catalogue(PROGDEFS),
        authenticator=authenticator,
        store=SqliteStore(":memory:").firings,
        max_waiting=10,
    )
    http = HttpSource("127.0.0.1:0", firing=firing, authenticator=authenticator)
    firing.start()
    http.start()
    yield f"http://{http.address}/"
    http.stop()
    firing.stop()


@pytest.mark.parametrize(
    ("kind", "data", "error"),
    [
        ("com.example.object.created", '{"key": "\\ud800"}', "lone surrogate"),
        ("com.example.\\ud800", '{"key": "a"}', "matches no trigger"),
        (
            "com.example.object.created",
            '{"key": ' + "[" * 975 + "]" * 975 + "}",
            "const to hi.name",
        ),
    ],
    ids=["value", "type", "deep"],
)
def test_a_trigger_answers_a_lone_surrogate_or_deep_nesting_with_400(
    trigger_url: str, kind: str, data: str, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    envelope = (
        f'{{"specversion": "1.0", "id": "e1", "source": "s3://photos/b", "type": "{kind}", '
        f'"datacontenttype": "application/json", "data": {data}}}'
    )
    request = urllib.request.Request(
        trigger_url,
        data=envelope.encode(),
        headers={"content-type": "application/cloudevents+json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=30)
    assert answer.value.code == 400
    assert error in json.loads(answer.value.read())["error"]
    assert "Traceback" not in caplog.text


def test_a_set_that_is_not_utf8_is_named_and_exit_2(client: Client, tmp_path: Path) -> None:
    # A shell passes bytes that are not UTF-8 as lone surrogates (\udcff for 0xff).
    result = submit(client, tmp_path, json.dumps(FLOW), 'a.n="\udcff"')
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        'dagyo: --set a.n="\\udcff": not UTF-8 text (character 6): write it in UTF-8\n'
    )


def test_a_trigger_answers_a_malformed_length_with_400(
    trigger_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    host, port = trigger_url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("POST", "/", headers={"Content-Length": "abc"})
        answer = connection.getresponse()
        assert answer.status == 400
        assert "Content-Length" in json.loads(answer.read())["error"]
    finally:
        connection.close()
    assert "Traceback" not in capfd.readouterr().err
