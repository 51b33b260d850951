"""Who is calling: bearer tokens from ``DAGYO_TOKENS``, their tenant, role and quotas.

The token file (YAML or JSON) holds only the sha256 of each token, never a token::

    tokens:
      - sha256: "<hex sha256 of the token>"
        tenant: team-a
        role: user          # user | admin
        quotas: {max_running_flows: 20, max_nodes: 50, max_export_items: 100000,
                 max_deadline_s: 3600, default_deadline_s: 600}

The file is re-read when its modification time or size changes, so revoking a token needs
no restart; a file that no longer parses keeps the last good table (and says so in the log),
because locking every user out over a typo is worse than a revocation a moment late.
Without a token file the scheduler runs open: every caller is an admin of every tenant.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from executor.core.errors import TokensInvalid, Unauthenticated

log = logging.getLogger("dagyo.scheduler.auth")

ROLE_USER = "user"
ROLE_ADMIN = "admin"
_ROLES = (ROLE_USER, ROLE_ADMIN)
_TOKEN_KEYS = {"sha256", "tenant", "role", "quotas"}
_INT_QUOTAS = (
    "max_running_flows",
    "max_nodes",
    "max_export_items",
    "max_const_values",
    "max_node_const_values",
)
# The const quotas hold for every token, and in open mode: each const value costs the
# scheduler a check and an encoding at submit (a token may raise them, up to the flow
# model's MAX_FLOW_CONST_VALUES).
DEFAULT_MAX_CONST_VALUES = 10_000
DEFAULT_MAX_NODE_CONST_VALUES = 10_000
_SECONDS_QUOTAS = ("max_deadline_s", "default_deadline_s")
_TENANT_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-.")


@dataclass(frozen=True)
class Quotas:
    """Limits of one token; ``None`` is no limit.

    Attributes:
        max_running_flows: flows of the tenant pending or running at once.
        max_nodes: nodes in one flow.
        max_export_items: export items kept with one flow record.
        max_deadline_s: the largest deadline a flow may ask for.
        default_deadline_s: the deadline of a flow submitted without one.
        max_const_values: const values in one flow (never unlimited: a default when unset).
        max_node_const_values: const values fed to one node of a flow (likewise).
    """

    max_running_flows: int | None = None
    max_nodes: int | None = None
    max_export_items: int | None = None
    max_deadline_s: float | None = None
    default_deadline_s: float | None = None
    max_const_values: int = DEFAULT_MAX_CONST_VALUES
    max_node_const_values: int = DEFAULT_MAX_NODE_CONST_VALUES


@dataclass(frozen=True)
class Principal:
    """The caller of one request.

    Attributes:
        tenant: whose flows it sees; empty in open mode.
        role: ``user`` (its tenant only) or ``admin`` (every tenant).
        quotas: its limits.
    """

    tenant: str
    role: str
    quotas: Quotas

    @property
    def admin(self) -> bool:
        """Whether it sees every tenant's flows."""
        return self.role == ROLE_ADMIN

    def sees(self, tenant: str) -> bool:
        """Whether a flow of ``tenant`` exists for this caller."""
        return self.admin or tenant == self.tenant


#: The caller when the scheduler runs open (no ``DAGYO_TOKENS``).
OPEN = Principal(tenant="", role=ROLE_ADMIN, quotas=Quotas())


def token_digest(token: str) -> str:
    """The hex sha256 of a token, as the token file holds it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def bearer_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    """The token of an ``authorization: Bearer <token>`` metadata entry, if any."""
    for key, value in metadata or ():
        if key.lower() != "authorization":
            continue
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        scheme, _, token = text.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


def parse_tokens(text: str, *, source: str) -> dict[str, Principal]:
    """Parse a token file into digest -> principal.

    Args:
        text: the file's YAML or JSON.
        source: the file's name, for messages.

    Raises:
        TokensInvalid: naming the file, the entry and the key at fault.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise TokensInvalid(f"{source}: not YAML or JSON: {e}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("tokens"), list):
        raise TokensInvalid(f"{source}: expected a mapping with a list under 'tokens'")
    table: dict[str, Principal] = {}
    problems: list[str] = []
    for index, entry in enumerate(data["tokens"]):
        where = f"{source}: tokens[{index}]"
        try:
            digest, principal = _entry(entry, where)
        except TokensInvalid as e:
            problems.append(str(e))
            continue
        if digest in table:
            problems.append(f"{where}: sha256 repeats an earlier entry")
        table[digest] = principal
    if problems:
        raise TokensInvalid("\n".join(problems))
    return table


def _entry(entry: Any, where: str) -> tuple[str, Principal]:
    if not isinstance(entry, Mapping):
        raise TokensInvalid(f"{where}: expected a mapping with sha256, tenant, role, quotas")
    unknown = sorted(set(entry) - _TOKEN_KEYS)
    if unknown:
        raise TokensInvalid(
            f"{where}: unknown key {unknown[0]!r}; the keys are {sorted(_TOKEN_KEYS)}"
        )
    digest = str(entry.get("sha256", "")).lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise TokensInvalid(
            f"{where}: sha256 must be 64 hex digits (the sha256 of the token, "
            "e.g. `printf %s TOKEN | sha256sum`), not the token itself"
        )
    tenant = entry.get("tenant")
    if not isinstance(tenant, str) or not tenant or set(tenant) - _TENANT_CHARS:
        raise TokensInvalid(f"{where}: tenant must be a name of a-z, 0-9, '_', '-', '.'")
    role = entry.get("role", ROLE_USER)
    if role not in _ROLES:
        raise TokensInvalid(f"{where}: role must be user or admin, got {role!r}")
    return digest, Principal(tenant=tenant, role=role, quotas=_quotas(entry.get("quotas"), where))


def _quotas(raw: Any, where: str) -> Quotas:
    if raw is None:
        return Quotas()
    if not isinstance(raw, Mapping):
        raise TokensInvalid(f"{where}: quotas must be a mapping")
    known = set(_INT_QUOTAS) | set(_SECONDS_QUOTAS)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise TokensInvalid(
            f"{where}: unknown quota {unknown[0]!r}; the quotas are {sorted(known)}"
        )
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None:
            continue
        number_ok = isinstance(value, int | float) and not isinstance(value, bool)
        if key in _INT_QUOTAS and (not isinstance(value, int) or isinstance(value, bool)):
            number_ok = False
        if not number_ok or not math.isfinite(value) or value <= 0:
            kind = "a whole number" if key in _INT_QUOTAS else "a number of seconds"
            raise TokensInvalid(f"{where}: quotas.{key} must be {kind} above 0, got {value!r}")
        values[key] = value
    quotas = Quotas(**values)
    if (
        quotas.default_deadline_s is not None
        and quotas.max_deadline_s is not None
        and quotas.default_deadline_s > quotas.max_deadline_s
    ):
        raise TokensInvalid(f"{where}: quotas.default_deadline_s is above max_deadline_s")
    return quotas


class TokenFile:
    """The token table of one file, re-read when the file changes.

    Args:
        path: the ``DAGYO_TOKENS`` file.

    Raises:
        TokensInvalid: when the file cannot be read or parsed at start.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._table = self._read()

    def _stat(self) -> tuple[int, int]:
        try:
            stat = os.stat(self.path)
        except OSError as e:
            raise TokensInvalid(f"{self.path}: cannot read the token file: {e.strerror}") from None
        return stat.st_mtime_ns, stat.st_size

    def _read(self) -> dict[str, Principal]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise TokensInvalid(f"{self.path}: cannot read the token file: {e}") from None
        return parse_tokens(text, source=str(self.path))

    def table(self) -> dict[str, Principal]:
        """The current table, re-read first when the file changed."""
        with self._lock:
            try:
                stamp = self._stat()
                if stamp != self._stamp:
                    self._table = self._read()
                    self._stamp = stamp
                    log.info("token file %s re-read: %d tokens", self.path, len(self._table))
            except TokensInvalid as e:
                log.error("%s; keeping the tokens read before", e)
            return self._table


class Authenticator:
    """Turns a request's metadata into its :class:`Principal`.

    Args:
        tokens: the token file; ``None`` runs open (every caller is :data:`OPEN`).
    """

    def __init__(self, tokens: TokenFile | None) -> None:
        self.tokens = tokens

    @property
    def open(self) -> bool:
        """Whether the scheduler runs without authentication."""
        return self.tokens is None

    def authenticate(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Principal:
        """The caller of a request.

        Raises:
            Unauthenticated: no bearer token, or one the token file does not hold.
        """
        if self.tokens is None:
            return OPEN
        token = bearer_token(metadata)
        if token is None:
            raise Unauthenticated(
                "this scheduler requires a token: set DAGYO_TOKEN "
                "(sent as `authorization: Bearer <token>`)"
            )
        digest = token_digest(token)
        table = self.tokens.table()
        for known, principal in table.items():
            if hmac.compare_digest(known, digest):
                return principal
        raise Unauthenticated(
            "the scheduler does not accept this token (unknown or revoked): "
            "check DAGYO_TOKEN, or ask an operator for a new one"
        )


def tokens_json(principals: Mapping[str, Principal]) -> str:
    """A token table as the JSON the token file takes (for tests and tooling)."""
    return json.dumps(
        {
            "tokens": [
                {
                    "sha256": digest,
                    "tenant": p.tenant,
                    "role": p.role,
                    "quotas": {k: v for k, v in vars(p.quotas).items() if v is not None},
                }
                for digest, p in principals.items()
            ]
        }
    )
