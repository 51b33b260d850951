"""Numbers from the environment: one reader, and a bad value is an error naming its variable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from executor._runtime.program import import_timeout_s
from executor._runtime.stream import StreamSettings
from executor.core.errors import DagyoError
from executor.core.settings import reconnect_max_delay_s
from scheduler.service.limits import max_message_bytes
from tests.commands import free_address, run_dagyo
from tests.conftest import EXAMPLES


def client_limit() -> int:
    import os

    return max_message_bytes(os.environ)


READERS: dict[str, Callable[[], Any]] = {
    "DAGYO_FRAME_MAX_ITEMS": StreamSettings.from_env,
    "DAGYO_FRAME_LINGER_S": StreamSettings.from_env,
    "DAGYO_IMPORT_TIMEOUT_S": import_timeout_s,
    "DAGYO_RECONNECT_MAX_DELAY_S": reconnect_max_delay_s,
    "DAGYO_MAX_MESSAGE_BYTES": client_limit,
}


@pytest.mark.parametrize("name", sorted(READERS))
def test_a_value_that_is_no_number_names_its_variable(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, "lots")
    with pytest.raises(DagyoError) as raised:
        READERS[name]()
    assert str(raised.value) == f"{name}='lots' is not a number: fix or unset it"


@pytest.mark.parametrize("name", sorted(READERS))
@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_a_number_that_is_not_above_zero_names_its_variable(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(DagyoError, match=f"^{name}='{value}' "):
        READERS[name]()


@pytest.mark.parametrize("name", sorted(READERS))
def test_unset_or_empty_is_the_default(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(name, raising=False)
    unset = READERS[name]()
    monkeypatch.setenv(name, "")
    assert READERS[name]() == unset


@pytest.mark.parametrize("args", [["flow", "list"], ["validate", str(EXAMPLES / "hello.json")]])
def test_the_cli_refuses_a_bad_message_limit_naming_it(args: list[str]) -> None:
    result = run_dagyo(
        *args, env={"DAGYO_MAX_MESSAGE_BYTES": "8MiB", "DAGYO_SCHEDULER": free_address()}
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr == (
        "dagyo: DAGYO_MAX_MESSAGE_BYTES='8MiB' is not a number: fix or unset it\n"
    )
