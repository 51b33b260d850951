"""Error ports: an item that failed, as a ``dagyo.types.Error`` on its progdef's error port.

A progdef names its error port in progdef.json (``"errors": "<port>"``); the port is an
ordinary output of type ``dagyo.types.Error``. Function style sends an item there when its
handler still fails after its retries; stream style calls ``job.fail(item, error)``.
"""

from __future__ import annotations

import time
import traceback as traceback_module
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from executor.core.errors import DagyoError, Stopped
from executor.core.types import Error, message_class

_RUNTIME = str(Path(__file__).parent)


def build_error(
    *, node: str, progdef: str, item: Message, error: BaseException | str, attempts: int = 1
) -> Error:
    """Return the Error for one failed item.

    Args:
        error: the exception the item failed with (its traceback is kept, without the
            runtime's frames), or a message when there is no exception.
        attempts: how often the item was tried.

    Raises:
        DagyoError: when error is a Stopped or a KeyboardInterrupt: a stop is not an item's
            failure.
    """
    if isinstance(error, (Stopped, KeyboardInterrupt)):
        raise DagyoError(
            f"{node}: {type(error).__name__} is a stop, not an item's failure: let it propagate"
        ) from error
    if isinstance(error, BaseException):
        text, trace = f"{type(error).__name__}: {error}", author_traceback(error)
    else:
        text, trace = str(error), ""
    return Error(
        node=node,
        progdef=progdef,
        typename=item.DESCRIPTOR.full_name,
        item=item.SerializeToString(),
        error=text,
        traceback=trace,
        attempts=attempts,
        time=time.time(),
    )


def author_traceback(error: BaseException) -> str:
    """The traceback of an exception from the author's first frame on (none of the runtime's).

    A panic inside the runtime (a decode error, a wrong type sent) keeps every frame.
    """
    frames = traceback_module.extract_tb(error.__traceback__)
    first = next((i for i, f in enumerate(frames) if not f.filename.startswith(_RUNTIME)), 0)
    lines = ["Traceback (most recent call last):\n"]
    lines += traceback_module.format_list(frames[first:])
    lines += traceback_module.format_exception_only(type(error), error)
    return "".join(lines)


def item_value(error: Error) -> Any:
    """The failed item of an Error as the JSON of its typename (base64 when undecodable)."""
    try:
        item = message_class(error.typename).FromString(error.item)
    except Exception:  # an unknown typename or bad bytes: show what there is
        return json_format.MessageToDict(error, preserving_proto_field_name=True).get("item", "")
    return json_format.MessageToDict(
        item, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def to_dict(message: Message) -> dict[str, Any]:
    """A message as the dict exports and logs print; an Error's item as JSON, not base64.

    Fields at their default are printed too: a count of 0 reads ``{"value": "0"}``, not ``{}``.
    """
    value = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    if isinstance(message, Error):
        value["item"] = item_value(message)
    return value
