"""The runtime's own errors read as one message naming the progdef, the node and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.embedded import TEXT, catalogue_with, make_progdef, run_flow, source


def _run_one(tmp_path: Path, name: str) -> tuple[str, str]:
    _, result = run_flow(
        {
            "name": f"{name}-flow",
            "nodes": {"s": {"progdef": "source"}, "n": {"progdef": name}},
            "edges": [{"from": "s.src", "to": "n.items"}],
            "consts": [{"to": "s.count", **source(1)}],
            "exports": {"out": "n.out"},
        },
        catalogue=catalogue_with(tmp_path),
    )
    assert result.state == "failed"
    assert result.failure is not None
    return result.failure.error, result.failure.traceback


def test_a_missing_secret_is_one_message_with_no_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    make_progdef(
        tmp_path,
        "needy",
        "def handler(ctx, item):\n    return item\n",
        inputs={"items": TEXT},
        outputs={"out": TEXT},
        run="main:handler",
        style="function",
        secrets=["NOT_SET_ANYWHERE"],
    )
    error, trace = _run_one(tmp_path, "needy")
    assert error == (
        "DagyoError: progdef needy, node n: secret NOT_SET_ANYWHERE is not set: export it in "
        "the executor's environment (in Kubernetes, the progdef's Secret)"
    )
    assert trace == ""


@pytest.mark.parametrize(
    ("returned", "got"), [("3", "int"), ("'text'", "str"), ("[item, 3]", "a list holding int")]
)
def test_a_handler_returning_the_wrong_type_is_one_message(
    tmp_path: Path, returned: str, got: str
) -> None:
    make_progdef(
        tmp_path,
        "wrong",
        f"def handler(ctx, item):\n    return {returned}\n",
        inputs={"items": TEXT},
        outputs={"out": TEXT},
        run="main:handler",
        style="function",
    )
    error, trace = _run_one(tmp_path, "wrong")
    assert error == (
        f"DagyoError: progdef wrong, node n: the handler returned {got}: return a message "
        "(a dagyo.types.Text for port out), a list of them, or None"
    )
    assert trace == ""
