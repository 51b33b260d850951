"""Fixtures of the deploy tests: a fake Kubernetes API server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.deploy.fake_api import FakeApiServer, serving


@pytest.fixture
def api_server() -> Iterator[FakeApiServer]:
    """A fake Kubernetes API server on the loopback interface (tests/deploy/fake_api.py)."""
    with serving() as api:
        yield api
