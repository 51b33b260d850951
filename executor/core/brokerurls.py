"""DAGYO_QUEUE's forms: one amqp:// URL, or several separated by ``;`` (a broker of several
nodes, the form kombu and Celery use for failover).

A list is split only at a ``;`` that starts another ``amqp://`` or ``amqps://`` URL, so a
password holding a ``;`` never splits it; the parser and the redaction split alike, so what
is checked is what is hidden.
"""

from __future__ import annotations

import re

_NEXT_URL = re.compile(r";(?=\s*amqps?://)", re.IGNORECASE)


def split_urls(queue: str) -> list[str]:
    """The broker URLs of a DAGYO_QUEUE value, in the order given, each stripped of spaces.

    Example:
        >>> split_urls("amqp://h1:5672/v;amqp://h2:5672/v")
        ['amqp://h1:5672/v', 'amqp://h2:5672/v']
    """
    return [part.strip() for part in _NEXT_URL.split(queue)]


def first_url(queue: str) -> str:
    """The first URL of a DAGYO_QUEUE value: the one that names the broker (state file)."""
    return split_urls(queue)[0]
