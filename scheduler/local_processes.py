"""The executor processes of a local cluster: what they inherit, how they start, when ready."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Mapping
from typing import Any

from executor.progdef import Progdef
from scheduler.tls import ENV_TLS_CERT, ENV_TLS_CLIENT_CA, ENV_TLS_KEY, ENV_TOKEN, ENV_TOKENS

# What an executor gets of this process's environment besides its progdef's secrets:
# the DAGYO_* settings and what a Python process needs to run.
PASSED_PREFIXES = ("DAGYO_", "PYTHON", "LC_")
# ...but not the scheduler's own credentials (its key, its token file) nor a caller's token.
WITHHELD = frozenset([ENV_TLS_CERT, ENV_TLS_KEY, ENV_TLS_CLIENT_CA, ENV_TOKENS, ENV_TOKEN])
PASSED = frozenset(
    [
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TERM",
        "TMPDIR",
        "TEMP",
        "TMP",
        "VIRTUAL_ENV",
        "CONDA_PREFIX",
        "LD_LIBRARY_PATH",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "SYSTEMROOT",
    ]
)


def progdef_environment(
    progdef: Progdef, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """What an executor of ``progdef`` gets of ``environ`` (this process's by default).

    The ``DAGYO_*`` settings but the scheduler's credentials (``WITHHELD``), what a process
    needs (PATH, HOME, LANG, PYTHON*…), the progdef's ``env`` and its declared ``secrets``;
    no other progdef's secrets.
    """
    environ = os.environ if environ is None else environ
    environment = {
        name: value
        for name, value in environ.items()
        if (name in PASSED or name.startswith(PASSED_PREFIXES)) and name not in WITHHELD
    }
    environment.update(progdef.env)
    environment.update({n: environ[n] for n in progdef.secrets if n in environ})
    return environment


def own_process_group() -> None:
    """In an executor before exec: Ctrl-C reaches only our process, which sends SIGTERM; and
    on Linux the executor gets SIGTERM (drains) should our process die without stopping it."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError):
            ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def mailbox_consumers(connection: Any, mailbox: str) -> int:
    import pika.exceptions

    channel = connection.channel()
    try:
        return int(channel.queue_declare(mailbox, passive=True).method.consumer_count)
    except pika.exceptions.ChannelClosedByBroker:  # 404: no executor declared it yet
        return 0
    finally:
        if channel.is_open:
            channel.close()
