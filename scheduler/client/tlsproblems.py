"""What a failed connection to the scheduler says of TLS, in words a user can act on."""

from __future__ import annotations

import re

from scheduler.tls import client_target

# What gRPC's details say when the peer closes a new connection at once, and when a
# certificate does not name the host dialled.
_CLOSED_AT_ONCE = "Socket closed"
_UNTRUSTED = re.compile(
    r"CERTIFICATE_VERIFY_FAILED|certificate signature failure|unable to get local issuer|"
    r"self[- ]signed certificate"
)
_WRONG_NAME = re.compile(r"Hostname Verification Check failed|[Pp]eer name .* not in peer")


def tls_problem(details: str, *, tls: bool, address: str) -> tuple[str, str]:
    """What an unreachable scheduler's gRPC details say of TLS: (reason, fix), else empty.

    Args:
        tls: the client dialled with TLS.
        address: the scheduler's address, as given.
    """
    if not tls:
        if _CLOSED_AT_ONCE in details:
            # What a TLS-only scheduler does to a plain-text client: it hangs up.
            return "", (
                "start it with `dagyo up` or `dagyo scheduler`, or set DAGYO_SCHEDULER "
                "to its host:port; if it serves TLS, set DAGYO_TLS_CA to the CA that "
                "signed its certificate (or write the address https://HOST:PORT)"
            )
        return "", ""
    host = client_target(address).rpartition(":")[0]
    if _UNTRUSTED.search(details):
        return (
            "the TLS handshake failed: its certificate is not signed by a CA this client trusts",
            "set DAGYO_TLS_CA to the CA that signed it",
        )
    if _WRONG_NAME.search(details):
        return (
            f"the TLS handshake failed: its certificate does not name {host}",
            f"dial it by a name its certificate holds, or give it a certificate for {host}",
        )
    if "handshake failed" in details.lower():
        return (
            "the TLS handshake failed",
            "check that it serves TLS, and DAGYO_TLS_CA (and DAGYO_TLS_CERT, DAGYO_TLS_KEY "
            "when it asks for a client certificate)",
        )
    return "", ""
