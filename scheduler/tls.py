"""TLS and token credentials of the scheduler's gRPC API, both sides of it.

The server side reads ``DAGYO_TLS_CERT`` and ``DAGYO_TLS_KEY`` (serve TLS only) and
``DAGYO_TLS_CLIENT_CA`` (also require client certificates). A client uses TLS when
``DAGYO_TLS_CA`` (the CA that signed the scheduler's certificate) or its own certificate is
set, or when the address is written ``https://host:port`` (then the system roots verify the
server); it presents ``DAGYO_TLS_CERT``/``DAGYO_TLS_KEY`` as its client certificate, and sends
``DAGYO_TOKEN`` as ``authorization: Bearer <token>`` on every call.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from scheduler.errors import TlsInvalid

if TYPE_CHECKING:
    import grpc

ENV_TLS_CERT = "DAGYO_TLS_CERT"
ENV_TLS_KEY = "DAGYO_TLS_KEY"
ENV_TLS_CLIENT_CA = "DAGYO_TLS_CLIENT_CA"
ENV_TLS_CA = "DAGYO_TLS_CA"
ENV_TOKEN = "DAGYO_TOKEN"
ENV_TOKENS = "DAGYO_TOKENS"
HTTPS = "https://"


def _pem(environ: Mapping[str, str], name: str) -> bytes | None:
    path = environ.get(name)
    if not path:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise TlsInvalid(f"{name}={path}: cannot read it: {e.strerror}") from None
    if b"-----BEGIN" not in data:
        raise TlsInvalid(f"{name}={path}: not a PEM file (expected -----BEGIN …)")
    return data


@dataclass(frozen=True)
class ServerTls:
    """The scheduler's certificate and key, and the CA its clients must be signed by."""

    cert: bytes
    key: bytes
    client_ca: bytes | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerTls | None:
        """The TLS settings, or ``None`` when the scheduler serves plain text.

        Raises:
            TlsInvalid: only one of cert and key set, or a file unreadable.
        """
        env = os.environ if environ is None else environ
        cert, key = _pem(env, ENV_TLS_CERT), _pem(env, ENV_TLS_KEY)
        client_ca = _pem(env, ENV_TLS_CLIENT_CA)
        if cert is None and key is None:
            if client_ca is not None:
                raise TlsInvalid(f"{ENV_TLS_CLIENT_CA} needs {ENV_TLS_CERT} and {ENV_TLS_KEY}")
            return None
        if cert is None or key is None:
            raise TlsInvalid(f"set both {ENV_TLS_CERT} and {ENV_TLS_KEY} (PEM files), or neither")
        return cls(cert=cert, key=key, client_ca=client_ca)

    def credentials(self) -> grpc.ServerCredentials:
        """gRPC server credentials; client certificates are required when a CA is set."""
        import grpc  # here: commands that need no gRPC (`dagyo run`) do not pay its import

        return grpc.ssl_server_credentials(
            [(self.key, self.cert)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )


def client_target(address: str) -> str:
    """The ``host:port`` of an address written plain or as ``https://host:port``."""
    return address.removeprefix(HTTPS).rstrip("/")


def client_credentials(
    address: str, environ: Mapping[str, str] | None = None
) -> grpc.ChannelCredentials | None:
    """The TLS credentials a client uses for ``address``, or ``None`` for plain text.

    Raises:
        TlsInvalid: a variable names a file that cannot be read.
    """
    env = os.environ if environ is None else environ
    ca = _pem(env, ENV_TLS_CA)
    cert, key = _pem(env, ENV_TLS_CERT), _pem(env, ENV_TLS_KEY)
    if ca is None and cert is None and not address.startswith(HTTPS):
        return None
    import grpc  # here: see ServerTls.credentials

    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )


def call_metadata(environ: Mapping[str, str] | None = None) -> tuple[tuple[str, str], ...]:
    """The metadata a client sends with every call: the bearer token, when set."""
    env = os.environ if environ is None else environ
    token = env.get(ENV_TOKEN, "").strip()
    return (("authorization", f"Bearer {token}"),) if token else ()
