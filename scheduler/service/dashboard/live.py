"""The dashboard's live views (``/api/events`` server-sent event streams), bounded.

Each live view holds a thread of the dashboard for as long as it is open, so one client or
one tenant must not be able to hold them all: a view is refused past the views of its
client (its address), of its tenant, or of the dashboard in all, and an open view closes
once it sent no change for :data:`LIVE_VIEW_IDLE_S` (a page still shown opens another) or
once its client stops reading for :data:`LIVE_VIEW_WRITE_TIMEOUT_S`.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from http import HTTPStatus

# Live views open at once: in all, from one client address, of one tenant.
LIVE_VIEWS = 32
LIVE_VIEWS_PER_CLIENT = 4
LIVE_VIEWS_PER_TENANT = 16
# A view that sent no change this long closes; a page still shown opens another.
LIVE_VIEW_IDLE_S = 300.0
# A client that reads none of its view's updates this long loses the view.
LIVE_VIEW_WRITE_TIMEOUT_S = 10.0
# Seconds a refused page waits before it asks again.
RETRY_AFTER_S = 5


@dataclass(frozen=True)
class Refusal:
    """Why a live view was not opened: an HTTP status and a sentence for the page."""

    status: HTTPStatus
    reason: str


class LiveViews:
    """Counts the open live views, of each client, of each tenant and in all.

    Args:
        total: views open at once in all.
        per_client: views one client address may hold open.
        per_tenant: views one tenant may hold open (no bound when the scheduler runs open:
            every caller is then the same).
        idle_s: a view that sent no change this long closes.
    """

    def __init__(
        self,
        *,
        total: int = LIVE_VIEWS,
        per_client: int = LIVE_VIEWS_PER_CLIENT,
        per_tenant: int = LIVE_VIEWS_PER_TENANT,
        idle_s: float = LIVE_VIEW_IDLE_S,
    ) -> None:
        self.total = total
        self.per_client = per_client
        self.per_tenant = per_tenant
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._clients: Counter[str] = Counter()
        self._tenants: Counter[str] = Counter()

    def take(self, client: str, tenant: str) -> Refusal | None:
        """Open a view for ``client`` of ``tenant``; else why not."""
        with self._lock:
            if self._clients[client] >= self.per_client:
                return Refusal(
                    HTTPStatus.TOO_MANY_REQUESTS,
                    f"{self._clients[client]} live views from this client are open, the most "
                    "one client may hold: close a page of the dashboard",
                )
            if tenant and self._tenants[tenant] >= self.per_tenant:
                return Refusal(
                    HTTPStatus.TOO_MANY_REQUESTS,
                    f"{self._tenants[tenant]} live views of tenant {tenant} are open, the most "
                    "one tenant may hold: close a page of the dashboard",
                )
            if self._clients.total() >= self.total:
                return Refusal(
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    f"the dashboard already serves {self.total} live views: try again later",
                )
            self._clients[client] += 1
            self._tenants[tenant] += 1
            return None

    def give_back(self, client: str, tenant: str) -> None:
        """Close a view :meth:`take` opened."""
        with self._lock:
            self._clients[client] -= 1
            self._tenants[tenant] -= 1
            self._clients += Counter()  # drops the counts at 0
            self._tenants += Counter()
