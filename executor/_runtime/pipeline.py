"""Running a function progdef's items several at a time, results still in input order.

An ``async def handler`` runs its items as coroutines on the process's event loop; a plain
handler whose progdef.json says ``"concurrency": N`` above 1 runs them on up to N threads
of the job. Either way, the job's thread takes the items, keeps up to N of them in flight
and sends each item's results once every item before it has been sent: a slow item holds
the later ones back, never reorders them. Each item is retried and goes to the error port
on its own, as one at a time; an item that fails for good without an error port panics the
job once it is the oldest, the items after it never sent.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections import deque
from collections.abc import Callable
from typing import Any

from executor._runtime.aio import Tasks, event_loop
from executor._runtime.handler import call_with_retries, log_retry, returned
from executor._runtime.inbox import Inbox
from executor._runtime.program import Program
from executor.core.errors import DagyoError, Stopped
from executor.errorport import build_error
from executor.sdk import Job

Start = Callable[[Any], "concurrent.futures.Future[Any]"]


def run_pipelined(program: Program, job: Job, inbox: Inbox, *, streamed: bool) -> None:
    """Run a function progdef's handler on up to ``concurrency`` items of its input at once.

    Args:
        inbox: the job's inbox, which is woken as each item ends.
        streamed: the input comes from a stream (False: consts, all there at once).

    Raises:
        Stopped: when the job is told to stop; the items in flight are cancelled first.
        Exception: an item's failure after its retries, without an error port (a panic).
    """
    concurrency = program.progdef.concurrency
    (stream,) = job.inputs.values()
    errors_port = program.progdef.errors
    errors = job.outputs.get(errors_port) if errors_port else None
    port, output = next(((p, o) for p, o in job.outputs.items() if p != errors_port), ("", None))
    attempts = program.progdef.retries.attempts
    one_item = output.message_class if output is not None else None
    start, close = _starter(program, job, inbox)
    # The items started, oldest first, with what each will return; and those taken from
    # the input but not started yet (the rest of a frame).
    flight: deque[tuple[Any, concurrent.futures.Future[Any]]] = deque()
    taken: deque[Any] = deque()

    def oldest_done() -> bool:
        return flight[0][1].done()

    try:
        while True:
            while taken and len(flight) < concurrency:
                item = taken.popleft()
                flight.append((item, start(item)))
            results: list[Any] = []
            while flight and flight[0][1].done():
                item, future = flight.popleft()
                try:
                    result = future.result()
                except Stopped:
                    raise
                except Exception as e:  # failed after its retries: an item error, or a panic
                    if errors is None:
                        raise
                    _send(results, output, job, port)
                    results = []
                    errors.send(
                        build_error(
                            node=job.node,
                            progdef=job.progdef,
                            item=item,
                            error=e,
                            attempts=attempts,
                        )
                    )
                    continue
                if type(result) is one_item:
                    results.append(result)
                else:
                    results.extend(returned(result, job, output, port))
            _send(results, output, job, port)
            if not flight and not taken and stream.ended:
                return
            if taken and len(flight) < concurrency:
                continue
            if not taken and len(flight) < concurrency and not stream.ended:
                if not streamed:
                    taken.extend(stream.next_batch())
                    continue
                found = inbox.take_until((stream.port,), oldest_done if flight else None)
                if found is not None:
                    taken.extend(stream.decode_frame(found[1]))
            else:  # a full window, or the input ended: wait for the oldest item
                inbox.take_until((), oldest_done)
    finally:
        close()


def _send(results: list[Any], output: Any, job: Job, port: str) -> None:
    if not results:
        return
    if output is None:
        raise DagyoError(
            f"progdef {job.progdef}: handler returned an item but the progdef has no "
            "output port: return None, or declare an output"
        )
    output.send_all(results)


def _starter(program: Program, job: Job, inbox: Inbox) -> tuple[Start, Callable[[], None]]:
    """(start an item, end what is still in flight) for the progdef's handler."""
    handler = program.run
    context = program.context()
    retries = program.progdef.retries
    if not program.is_async:
        pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=program.progdef.concurrency, thread_name_prefix=f"dagyo-item {job.node}"
        )

        def start_call(item: Any) -> concurrent.futures.Future[Any]:
            future = pool.submit(call_with_retries, handler, context, item, job, retries)
            future.add_done_callback(lambda _: inbox.wake())
            return future

        # An item running finishes (a plain handler cannot be interrupted); none starts.
        return start_call, lambda: pool.shutdown(wait=True, cancel_futures=True)

    tasks = Tasks(event_loop(), inbox.wake)

    async def attempt(item: Any) -> Any:
        try:
            return await handler(context, item)
        except Stopped:
            raise
        except Exception as first:
            if retries.attempts <= 1:
                raise
            error = first
        again = retries.attempts - 1
        for number in range(again):
            log_retry(job, number, again, error)
            await asyncio.sleep(retries.backoff_s * (2**number))
            try:
                return await handler(context, item)
            except Stopped:
                raise
            except Exception as e:
                if number == again - 1:
                    raise
                error = e
        return None

    def start_coroutine(item: Any) -> concurrent.futures.Future[Any]:
        return tasks.start(attempt(item))

    return start_coroutine, tasks.cancel
