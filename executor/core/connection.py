"""Opening one broker connection: to the first URL of DAGYO_QUEUE that answers.

:func:`connect` is the one way a dagyo process opens a connection (the reconnection loop of
:mod:`executor.core.amqp` goes through it too): the parameters every connection has, one
attempt per broker URL of a list, and pika's errors translated into dagyo's, every password
redacted. :func:`broker_node` names the node a connection went to.
"""

from __future__ import annotations

import logging

import pika
import pika.exceptions

from executor.core.brokerurls import split_urls
from executor.core.constants import AMQP_HEARTBEAT_S
from executor.core.errors import BrokerRefused, BrokerUnavailable, BrokerUrlInvalid
from executor.core.settings import check_url, vhost_of

# pika logs each failed connection attempt as errors with tracebacks (every few seconds
# during an outage); dagyo says what failed and what to do in one line of its own, and
# logs its reconnections, in every process that connects through this module.
logging.getLogger("pika").setLevel(logging.CRITICAL)

# What pika raises when the connection (not just a channel) is gone.
CONNECTION_ERRORS = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.ConnectionClosed,
    pika.exceptions.StreamLostError,
    ConnectionError,
    OSError,
)


def connection_parameters(url: str) -> list[pika.URLParameters]:
    """Parameters for a dagyo connection to ``url``: one per broker URL of a list.

    Raises:
        BrokerUrlInvalid: when a URL is not an amqp:// URL pika can use (the message never
            holds a password).
    """
    check_url(url)
    return [_parameters(one) for one in split_urls(url)]


def _parameters(url: str) -> pika.URLParameters:
    try:
        parameters = pika.URLParameters(url)
    except Exception as e:  # pika's own text may quote the URL, password included
        raise BrokerUrlInvalid(url, type(e).__name__) from None
    parameters.heartbeat = AMQP_HEARTBEAT_S
    parameters.blocked_connection_timeout = 60
    # One attempt per URL and per connect(): the reconnection loop (reconnect) owns the
    # waits between attempts, and a node that is down must not hold up the next one.
    parameters.connection_attempts = 1
    parameters.socket_timeout = 5
    return parameters


def connect(url: str) -> pika.BlockingConnection:
    """Open one connection, translating pika's errors.

    ``url`` may list several broker URLs separated by ``;`` (the nodes of one cluster): pika
    tries them in the order given, each once, and the connection goes to the first that
    answers; when every one fails, the last one's error is the one said.

    Raises:
        BrokerUrlInvalid: when the URL is malformed.
        BrokerRefused: when the broker refuses the credentials or the vhost.
        BrokerUnavailable: naming the URL and how to start a broker.
    """
    parameters = connection_parameters(url)
    try:
        return pika.BlockingConnection(parameters)
    except pika.exceptions.ProbableAuthenticationError as e:
        raise BrokerRefused(
            url, "the user name or password was refused: check the credentials in the URL"
        ) from e
    except pika.exceptions.ProbableAccessDeniedError as e:
        raise BrokerRefused(url, _access_denied(str(e), vhost_of(url))) from e
    except pika.exceptions.ConnectionClosedByBroker as e:
        raise BrokerRefused(url, f"{e.reply_code} {e.reply_text}") from e
    except CONNECTION_ERRORS as e:
        raise BrokerUnavailable(url, type(e).__name__) from e


def broker_node(connection: pika.BlockingConnection) -> str:
    """The broker node a connection went to, as ``host:port`` (which URL of a list answered).

    AMQP tells a client no node name; the address it connected to is what names the node in
    messages (a lost node, a flow that failed with it).
    """
    parameters = getattr(getattr(connection, "_impl", None), "params", None)
    if parameters is None:
        return "the broker"
    return f"{parameters.host}:{parameters.port}"


def _access_denied(text: str, vhost: str) -> str:
    """Say why the broker refused a vhost, from the text of its connection.close."""
    if "not found" in text:
        return (
            f"vhost {vhost!r} does not exist: create it (`rabbitmqctl add_vhost {vhost}`) or "
            "name an existing one in the URL's path"
        )
    return (
        f"the user may not use vhost {vhost!r}: grant it "
        f"(`rabbitmqctl set_permissions -p {vhost} USER '.*' '.*' '.*'`) or use another user"
    )
