"""What every command shares: exit statuses, the shared options, ``fail`` and ``connected``."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from executor.core.errors import (
    BrokerUnavailable,
    FlowInvalid,
    ProgdefInvalid,
    SchedulerError,
    SchedulerRefused,
    SchedulerUnauthenticated,
    SchedulerUnavailable,
)
from executor.core.progdef import Catalogue, Progdef, load_catalogue
from scheduler.constants import DEFAULT_SCHEDULER_ADDRESS, ENV_PROGDEFS, ENV_SCHEDULER

if TYPE_CHECKING:
    from scheduler.client.api import SchedulerClient
    from scheduler.flow.model import CheckedFlow

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_UNREACHABLE = 3
EXIT_UNAUTHENTICATED = 4
# The flow succeeded, but exports past the record's cap were not kept and not seen.
EXIT_EXPORTS_DROPPED = 5


def fail(message: str, code: int) -> NoReturn:
    """Print ``dagyo: message`` (every line) on stderr and exit with code."""
    for line in message.splitlines() or [""]:
        click.echo(f"dagyo: {line}" if line else "", err=True)
    sys.exit(code)


def progdefs_option(function: Any) -> Any:
    """The shared ``--progdefs DIR`` option, repeatable (env DAGYO_PROGDEFS, its folders
    joined by ``os.pathsep``: click splits a path option's variable on it)."""
    return click.option(
        "--progdefs",
        "progdefs_dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar=ENV_PROGDEFS,
        show_envvar=True,
        multiple=True,
        help="Folder of progdef folders; repeat it for several, which make one catalogue "
        f"(DAGYO_PROGDEFS: folders joined by {os.pathsep!r}) [default: ./progdefs, else the "
        "sample catalogue].",
    )(function)


def scheduler_option(function: Any) -> Any:
    """The shared ``--scheduler ADDRESS`` option (env DAGYO_SCHEDULER)."""
    return click.option(
        "--scheduler",
        "address",
        envvar=ENV_SCHEDULER,
        default=DEFAULT_SCHEDULER_ADDRESS,
        show_default=True,
        show_envvar=True,
        metavar="HOST:PORT[,HOST:PORT…]",
        help="The scheduler's gRPC address; several schedulers sharing one state separated "
        "by `,`: the first that answers is used.",
    )(function)


def json_option(function: Any) -> Any:
    """The shared ``--json`` flag."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON (one object a line) instead of text."
    )(function)


def catalogue_of(
    progdefs_dir: Sequence[Path], *, warn: bool = True, code: bool = False
) -> Catalogue:
    """Load the catalogue, or exit 2 naming every malformed progdef.json.

    Each progdef left out because its protos do not load is one warning line on stderr
    (unless ``warn`` is off: ``dagyo progdefs`` lists them itself). With ``code``, each
    progdef's ``run`` module is imported (where its code is there) and must name its
    function, or the command exits 2 too (:func:`code_of`).
    """
    from scheduler.service.config import default_progdefs_dir

    try:
        catalogue = load_catalogue(progdefs_dir or default_progdefs_dir())
    except ProgdefInvalid as e:
        fail(str(e), EXIT_INVALID)
    if warn:
        for left in catalogue.left_out.values():
            for line in left.lines():
                click.echo(f"dagyo: warning: {line}", err=True)
    if code:
        code_of(catalogue)
    return catalogue


def code_of(progdefs: Mapping[str, Progdef]) -> None:
    """Exit 2 when a progdef's ``run`` (or ``init``) module does not import or names no
    function (see :func:`executor.inprocess.check_code`)."""
    from executor.inprocess import check_code

    problems = check_code(progdefs)
    if problems:
        fail("\n".join(problems), EXIT_INVALID)


def checked_flow(
    path: Path, catalogue: dict[str, Progdef], sets: Sequence[str] = ()
) -> CheckedFlow:
    """Load and check a flow file (with its ``--set`` consts), or exit 2 with every
    problem, one a line."""
    from scheduler.flow.check import check_flow
    from scheduler.flow.overrides import parse_with_sets
    from scheduler.flow.parse import parse_flow
    from scheduler.service.limits import capped_problems

    try:
        text = flow_text(path)
        flow = parse_flow(text, source=str(path))
        if sets:
            flow = parse_with_sets(text, sets, source=str(path))
        return check_flow(flow, catalogue, source=str(path))
    except FlowInvalid as e:
        # Cut as the scheduler cuts them: a problem may echo a name of any length.
        fail("\n".join(capped_problems(e.problems)), EXIT_INVALID)


def flow_text(path: Path) -> str:
    """The text of a flow file, read no further than the scheduler's message limit
    (``DAGYO_MAX_MESSAGE_BYTES``).

    Raises:
        FlowInvalid: naming the file, when it cannot be read, is not UTF-8 or is too long.
    """
    from scheduler.flow.parse import read_flow_text
    from scheduler.service.limits import max_message_bytes

    return read_flow_text(path, max_bytes=max_message_bytes(os.environ))


def utf8_arguments(option: str, values: Sequence[str]) -> None:
    """Exit 2 naming the first value that is not UTF-8 text (a shell passes any bytes; a
    request to the scheduler can carry only UTF-8)."""
    for value in values:
        try:
            value.encode()
        except UnicodeEncodeError as e:
            shown = value.encode("utf-8", "backslashreplace").decode()[:100]
            fail(
                f"{option} {shown}: not UTF-8 text (character {e.start + 1}): write it in UTF-8",
                EXIT_INVALID,
            )


def set_option(function: Any) -> Any:
    """The shared ``--set NODE.PORT=JSON`` option (repeatable)."""
    return click.option(
        "--set",
        "sets",
        multiple=True,
        metavar="NODE.PORT=JSON",
        help="Give input NODE.PORT these const items (one JSON item, or a JSON list), "
        "replacing its const or supplying a missing one; repeatable.",
    )(function)


@contextlib.contextmanager
def connected(address: str) -> Iterator[SchedulerClient]:
    """A client of the scheduler; its errors become one line and an exit status."""
    from scheduler.client.api import SchedulerClient

    try:
        with SchedulerClient(address) as client:
            yield client
    except (SchedulerUnavailable, BrokerUnavailable) as e:
        fail(str(e), EXIT_UNREACHABLE)
    except SchedulerUnauthenticated as e:
        fail(str(e), EXIT_UNAUTHENTICATED)
    except SchedulerRefused as e:
        fail(str(e), EXIT_INVALID)
    except SchedulerError as e:
        fail(str(e), EXIT_FAILED)
