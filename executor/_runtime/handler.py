"""Running a function progdef: its handler called on each item, with retries, the error
port and what it returned sent on its one output."""

from __future__ import annotations

import inspect
from typing import Any

from google.protobuf.message import Message

from executor._runtime.program import Program
from executor.core.errors import DagyoError, Stopped
from executor.errorport import build_error
from executor.sdk import Job, OutputStream


def returned(result: Any, job: Job, output: OutputStream | None, port: str) -> list[Any]:
    """The messages a handler returned, or a DagyoError saying what to return instead."""
    if result is None:
        return []
    if isinstance(result, Message):
        return [result]
    if inspect.iscoroutine(result):
        result.close()  # never awaited: no warning at its collection
        raise DagyoError(
            f"progdef {job.progdef}, node {job.node}: the handler returned a coroutine: "
            "define it with async def (a decorator wrapping it must be an async def too)"
        )
    if isinstance(result, list | tuple):
        wrong = next((r for r in result if not isinstance(r, Message)), None)
        if wrong is None:
            return list(result)
        got = f"a list holding {type(wrong).__name__}"
    else:
        got = type(result).__name__
    wanted = f" (a {output.typename} for port {port})" if output is not None else ""
    raise DagyoError(
        f"progdef {job.progdef}, node {job.node}: the handler returned {got}: return a "
        f"message{wanted}, a list of them, or None"
    )


def run_handler(program: Program, job: Job) -> None:
    """Call a function progdef's handler on each item of its one input, until it ends.

    A failed call is retried as the progdef says; one that fails after its retries goes to
    the error port when there is one, else raises (a panic).
    """
    context = program.context()
    (stream,) = job.inputs.values()
    errors_port = program.progdef.errors
    errors = job.outputs.get(errors_port) if errors_port else None
    port, output = next(((p, o) for p, o in job.outputs.items() if p != errors_port), ("", None))
    handler = program.run
    retries = program.progdef.retries
    # What a handler returns most often; anything else goes through _returned.
    one_item = output.message_class if output is not None else None
    while not stream.ended:
        results: list[Any] = []
        for item in stream.next_batch():
            try:
                try:
                    result = handler(context, item)
                except Stopped:
                    raise
                except Exception as first:
                    if retries.attempts <= 1:
                        raise
                    result = _retry(
                        handler, context, item, job, first, retries.attempts - 1, retries.backoff_s
                    )
            except Exception as e:  # failed after its retries: an item error, or a panic
                if errors is None or isinstance(e, Stopped):
                    raise
                errors.send(
                    build_error(
                        node=job.node,
                        progdef=job.progdef,
                        item=item,
                        error=e,
                        attempts=retries.attempts,
                    )
                )
                continue
            if type(result) is one_item:
                results.append(result)
            else:
                results.extend(returned(result, job, output, port))
        if results:
            if output is None:
                raise DagyoError(
                    f"progdef {job.progdef}: handler returned an item but the progdef has no "
                    "output port: return None, or declare an output"
                )
            # One batch per input frame: the results of a frame go out together.
            output.send_all(results)


def _retry(
    handler: Any,
    context: Any,
    item: Any,
    job: Job,
    error: Exception,
    attempts: int,
    backoff_s: float,
) -> Any:
    """Call the handler up to ``attempts`` more times after ``error``; re-raise the last one.

    Each retry logs one WARNING naming the node, the attempt and the error it follows.
    """
    for attempt in range(attempts):
        log_retry(job, attempt, attempts, error)
        job.sleep(backoff_s * (2**attempt))
        try:
            return handler(context, item)
        except Stopped:
            raise
        except Exception as e:
            if attempt == attempts - 1:
                raise
            error = e
    return None


def call_with_retries(handler: Any, context: Any, item: Any, job: Job, retries: Any) -> Any:
    """Call a plain handler on one item with the progdef's retries (see run_handler)."""
    try:
        return handler(context, item)
    except Stopped:
        raise
    except Exception as first:
        if retries.attempts <= 1:
            raise
        return _retry(handler, context, item, job, first, retries.attempts - 1, retries.backoff_s)


def log_retry(job: Job, attempt: int, attempts: int, error: Exception) -> None:
    """Log one WARNING for the retry ``attempt`` (from 0) of ``attempts`` after ``error``."""
    job.logger.warning(
        "node %s (progdef %s): retrying item (attempt %d of %d) after %s: %s",
        job.node,
        job.progdef,
        attempt + 2,
        attempts + 1,
        type(error).__name__,
        error,
    )
