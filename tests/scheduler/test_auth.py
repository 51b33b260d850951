"""The token file: parsing, re-reading on change, and who a request's metadata names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from executor.core.errors import TokensInvalid, Unauthenticated
from scheduler.service.auth import (
    OPEN,
    Authenticator,
    Principal,
    Quotas,
    TokenFile,
    bearer_token,
    token_digest,
    tokens_json,
)

ALICE = Principal(tenant="team-a", role="user", quotas=Quotas(max_running_flows=2, max_nodes=5))
ROOT = Principal(tenant="ops", role="admin", quotas=Quotas())


def write(path: Path, text: str) -> None:
    path.write_text(text)
    # a later write within the same clock tick must still look changed
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


def test_a_token_names_its_tenant_role_and_quotas(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(tokens_json({token_digest("alice"): ALICE, token_digest("root"): ROOT}))
    auth = Authenticator(TokenFile(path))
    assert auth.authenticate([("authorization", "Bearer alice")]) == ALICE
    assert auth.authenticate([("authorization", "bearer root")]).admin
    assert not ALICE.sees("team-b") and ALICE.sees("team-a") and ROOT.sees("team-b")


def test_yaml_as_the_issue_writes_it(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(
        "tokens:\n"
        f'  - sha256: "{token_digest("t")}"\n'
        "    tenant: team-a\n"
        "    role: user\n"
        "    quotas: {max_running_flows: 20, max_nodes: 50, max_export_items: 100000,"
        " max_deadline_s: 3600, default_deadline_s: 600}\n"
    )
    principal = Authenticator(TokenFile(path)).authenticate([("authorization", "Bearer t")])
    assert principal.quotas == Quotas(20, 50, 100000, 3600, 600)


def test_missing_and_unknown_tokens_say_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(tokens_json({token_digest("alice"): ALICE}))
    auth = Authenticator(TokenFile(path))
    with pytest.raises(Unauthenticated, match="set DAGYO_TOKEN"):
        auth.authenticate([])
    with pytest.raises(Unauthenticated, match="unknown or revoked") as caught:
        auth.authenticate([("authorization", "Bearer mallory")])
    assert "mallory" not in str(caught.value)


def test_a_revoked_token_is_refused_once_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(tokens_json({token_digest("alice"): ALICE, token_digest("root"): ROOT}))
    auth = Authenticator(TokenFile(path))
    assert auth.authenticate([("authorization", "Bearer alice")]) == ALICE
    write(path, tokens_json({token_digest("root"): ROOT}))
    with pytest.raises(Unauthenticated):
        auth.authenticate([("authorization", "Bearer alice")])
    # a file that no longer parses keeps the last good table
    write(path, "tokens: [{sha256: nope}]")
    assert auth.authenticate([("authorization", "Bearer root")]) == ROOT


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "a list under 'tokens'"),
        ("tokens: [{sha256: abc, tenant: a}]", "64 hex digits"),
        (f"tokens: [{{sha256: {'a' * 64}, tenant: 'A B'}}]", "tenant must be"),
        (f"tokens: [{{sha256: {'a' * 64}, tenant: a, role: root}}]", "role must be user or admin"),
        (f"tokens: [{{sha256: {'a' * 64}, tenant: a, token: x}}]", "unknown key 'token'"),
        (f"tokens: [{{sha256: {'a' * 64}, tenant: a, quotas: {{max_nodes: 0}}}}]", "above 0"),
        (f"tokens: [{{sha256: {'a' * 64}, tenant: a, quotas: {{max_nodes: .nan}}}}]", "above 0"),
        (f"tokens: [{{sha256: {'a' * 64}, tenant: a, quotas: {{max_nodez: 3}}}}]", "max_nodez"),
        ("tokens: [x", "not YAML or JSON"),
    ],
)
def test_a_malformed_token_file_names_the_entry_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(text)
    with pytest.raises(TokensInvalid, match=message):
        TokenFile(path)


def test_open_mode_and_bearer_parsing() -> None:
    assert Authenticator(None).authenticate([]) == OPEN
    assert bearer_token([("x-other", "1"), ("authorization", "Bearer  tok ")]) == "tok"
    assert bearer_token([("authorization", "Basic abc")]) is None
