"""The one error tree: every dagyo error is defined in executor/core/errors.py (or, when only
the CLI and the deploy tools raise it, in scheduler/errors.py), under DagyoError."""

from __future__ import annotations

import ast
import inspect

import pytest

from executor.core import errors
from scheduler import errors as scheduler_errors
from tests.conftest import ROOT


def exception_classes_defined_outside_errors() -> list[str]:
    """``path:line Name`` of each exception class a module other than the two errors.py
    defines."""
    known = {
        name
        for module in (errors, scheduler_errors)
        for name, value in vars(module).items()
        if inspect.isclass(value)
    }
    known |= {"Exception", "BaseException", "ValueError", "RuntimeError", "LookupError"}
    found = []
    for folder in ("executor", "scheduler"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if (
                relative.parts[:2] == ("executor", "pb")
                or relative.parts[:2] == ("scheduler", "pb")
                or relative.as_posix() in ("executor/core/errors.py", "scheduler/errors.py")
            ):
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ClassDef):
                    bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
                    if bases & known:
                        found.append(f"{relative}:{node.lineno} {node.name}")
    return found


def test_every_error_is_defined_in_executor_errors() -> None:
    assert exception_classes_defined_outside_errors() == []


def test_every_error_derives_from_dagyo_error_and_says_when_it_is_raised() -> None:
    for module in (errors, scheduler_errors):
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, BaseException):
                assert issubclass(value, errors.DagyoError), name
                assert (value.__doc__ or "").startswith("Raised "), name


@pytest.mark.parametrize("error", [errors.ProgdefInvalid, errors.FlowInvalid, errors.JsonProblems])
def test_the_errors_carrying_problems_share_one_base(error: type[errors.Invalid]) -> None:
    raised = error(["a.json: first problem", "a.json: second problem"])
    assert isinstance(raised, errors.Invalid)
    assert raised.problems == ["a.json: first problem", "a.json: second problem"]
    assert str(raised) == "a.json: first problem\na.json: second problem"


def test_a_refusal_of_the_scheduler_carries_its_problems_too() -> None:
    refused = errors.SchedulerRefused(["node x: no such progdef"], code="INVALID_ARGUMENT")
    assert isinstance(refused, errors.Invalid)
    assert (refused.problems, refused.code) == (["node x: no such progdef"], "INVALID_ARGUMENT")


def test_what_cannot_be_reached_is_said_alike() -> None:
    broker = errors.BrokerUnavailable("amqp://guest:secret@nowhere:5672/%2F", "refused")
    scheduler = errors.SchedulerUnavailable("nowhere:50051", "refused")
    docker = scheduler_errors.DockerUnavailable("unix:///var/run/docker.sock", "refused")
    for error in (broker, scheduler, docker):
        assert isinstance(error, errors.Unreachable)
        assert error.reason == "refused"
        assert str(error).startswith(f"cannot reach {error.what} at {error.where} (refused): ")
        assert str(error).endswith(error.fix)
    assert isinstance(broker, errors.BrokerError)
    assert broker.where == "amqp://guest:***@nowhere:5672/%2F"
