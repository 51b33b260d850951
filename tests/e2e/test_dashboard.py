"""The dashboard in a real browser (Debian's Chromium through Playwright) on a real cluster.

Each test submits real flows and asserts what a person sees; a screenshot of each page is
kept in the test's folder (``dashboard-*.png``).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler.service.dashboard import Dashboard
from tests.cluster import LocalCluster, state_of

# Each runs a cluster or a scheduler process: started first under xdist.
pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SLOW_FLOW = {
    "name": "slowly",
    "nodes": {
        "names": {"progdef": "source"},
        "lag": {"progdef": "slow"},
        "hi": {"progdef": "greet"},
        "out": {"progdef": "void_sink"},
    },
    "edges": [
        {"from": "names.src", "to": "lag.items"},
        {"from": "lag.items", "to": "hi.name"},
        {"from": "hi.greeting", "to": "out.sink"},
    ],
    "consts": [
        {"to": "names.count", "values": [{"value": 400}]},
        {"to": "lag.delay_ms", "values": [{"value": 20}]},
    ],
    "exports": {"greetings": "hi.greeting"},
}
PANIC_FLOW = {
    "name": "boom",
    "nodes": {"fuse": {"progdef": "explode"}, "total": {"progdef": "count"}},
    "edges": [{"from": "fuse.items", "to": "total.items"}],
    "consts": [{"to": "fuse.items", "values": [{"text": "ok"}, {"text": "panic, as asked"}]}],
    "exports": {"total": "total.total"},
}


@pytest.fixture(scope="module")
def cluster(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        broker_url,
        tmp_path_factory.mktemp("dashboard"),
        names=("source", "slow", "greet", "void_sink", "explode", "count"),
    ).start()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def dashboard(cluster: LocalCluster) -> Iterator[Dashboard]:
    scheduler = cluster.scheduler
    assert scheduler is not None
    dashboard = Dashboard(
        address="127.0.0.1:0", service=scheduler.service, authenticator=scheduler.authenticator
    )
    dashboard.start()
    try:
        yield dashboard
    finally:
        dashboard.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert CHROMIUM, "the browser tests need Chromium: apt-get install -y chromium"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any, tmp_path: Path) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
    finally:
        context.close()


def test_a_running_flow_shows_its_graph_and_rising_counts(
    cluster: LocalCluster, dashboard: Dashboard, page: Any, tmp_path: Path
) -> None:
    flow_id = cluster.submit(SLOW_FLOW)
    page.goto(dashboard.url)
    row = page.locator(f'#flows tr[data-flow="{flow_id}"]')
    row.wait_for()
    assert "slowly" in row.inner_text()
    page.screenshot(path=str(tmp_path / "dashboard-flows.png"))

    row.locator("a").click()
    page.wait_for_url(f"**/flows/{flow_id}")
    for node in SLOW_FLOW["nodes"]:
        page.locator(f'#graph g.node[data-node="{node}"]').wait_for()
    assert page.locator("#graph g.edge").count() == len(SLOW_FLOW["edges"])
    assert "Text" in (page.locator("#graph g.edge").first.text_content() or "")

    items = page.locator('#nodes tr[data-node="lag"] td.items')
    page.wait_for_function(
        "() => Number(document.querySelector('#nodes tr[data-node=\"lag\"] td.items')"
        "?.textContent) > 0"
    )
    first = int(items.inner_text())
    page.wait_for_function(
        f"() => Number(document.querySelector('#nodes tr[data-node=\"lag\"] td.items')"
        f"?.textContent) > {first}"
    )
    # The edge into hi counts its items live and says how many frames wait in its queue.
    edge = '#graph g.edge[data-edge="lag.items → hi.name"]'
    page.wait_for_function(
        f"() => Number(document.querySelector('{edge}')?.dataset.items) > 0"
        f" && document.querySelector('{edge}')?.dataset.depth !== ''"
    )
    items_line, depth_line = page.locator(f"{edge} tspan").all_text_contents()
    assert re.fullmatch(r"Text · \d+ items", items_line), items_line
    assert re.fullmatch(r"\d+ queued", depth_line), depth_line
    passed = int(page.locator(edge).get_attribute("data-items") or 0)
    page.wait_for_function(
        f"() => Number(document.querySelector('{edge}')?.dataset.items) > {passed}"
    )
    page.screenshot(path=str(tmp_path / "dashboard-flow.png"))
    cluster.wait(flow_id)
    page.locator("h1 .s-succeeded").wait_for()
    assert int(items.inner_text()) == 400
    page.wait_for_function(f"() => document.querySelector('{edge}')?.dataset.items === '400'")
    assert page.locator('#nodes tr[data-node="hi"] td.received').inner_text() == "400"
    assert '"hello name-0"' in page.locator("#exports").inner_text()


def test_a_panicked_flow_shows_its_traceback(
    cluster: LocalCluster, dashboard: Dashboard, page: Any, tmp_path: Path
) -> None:
    flow_id = cluster.submit(PANIC_FLOW)
    cluster.wait(flow_id)
    page.goto(f"{dashboard.url}flows/{flow_id}")
    failure = page.locator("#failure")
    failure.wait_for()
    assert "fuse" in failure.inner_text() and "explode" in failure.inner_text()
    assert "panic, as asked" in failure.inner_text()
    assert "Traceback" in page.locator("#traceback").inner_text()
    page.screenshot(path=str(tmp_path / "dashboard-failure.png"))

    page.goto(f"{dashboard.url}failures")
    page.locator(f'#failures a:text("{flow_id}")').wait_for()


def test_cancel_asks_first_and_cancels_once_confirmed(
    cluster: LocalCluster, dashboard: Dashboard, page: Any
) -> None:
    flow = {
        **SLOW_FLOW,
        "consts": [
            {"to": "names.count", "values": [{"value": 100000}]},
            {"to": "lag.delay_ms", "values": [{"value": 50}]},
        ],
    }
    flow_id = cluster.submit(flow)
    page.goto(f"{dashboard.url}flows/{flow_id}")
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.locator("#cancel").click()
    page.wait_for_function("() => !document.querySelector('#cancel')?.disabled")
    assert asked and flow_id in asked[0], asked
    with cluster.client() as client:
        assert state_of(client.get(flow_id)) == "running"  # dismissed: nothing was cancelled
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#cancel").click()
    page.locator("h1 .s-cancelled").wait_for()
    assert state_of(cluster.wait(flow_id)) == "cancelled"


def test_an_edge_label_of_a_long_typename_stays_between_the_node_boxes(
    cluster: LocalCluster, dashboard: Dashboard, page: Any, tmp_path: Path
) -> None:
    flow = {
        **SLOW_FLOW,
        "consts": [
            {"to": "names.count", "values": [{"value": 8}]},
            {"to": "lag.delay_ms", "values": [{"value": 1}]},
        ],
    }
    flow_id = cluster.submit(flow)
    assert state_of(cluster.wait(flow_id)) == "succeeded"
    # Its record as the page gets it, every edge carrying a catalogue's own long typename.
    record = page.request.get(f"{dashboard.url}api/flows/{flow_id}").json()
    for edge in record["graph"]["edges"]:
        edge["typename"] = "nc.words.Word"
    page.route(
        "**/api/events?flow=*",
        lambda route: route.fulfill(
            status=200,
            headers={"Content-Type": "text/event-stream"},
            body=f"data: {json.dumps(record)}\n\n",
        ),
    )
    page.goto(f"{dashboard.url}flows/{flow_id}")
    label = page.locator('#graph g.edge[data-edge="lag.items → hi.name"] text')
    label.wait_for()
    assert label.text_content() == "nc.words.Word · 8 items"
    page.screenshot(path=str(tmp_path / "dashboard-long-type.png"))
    overlaps = page.evaluate(
        """() => {
          const rects = [...document.querySelectorAll('#graph g.node rect')]
            .map((r) => r.getBBox());
          return [...document.querySelectorAll('#graph g.edge text')].map((t) => t.getBBox())
            .filter((text) => rects.some((r) =>
              text.x < r.x + r.width && r.x < text.x + text.width &&
              text.y < r.y + r.height && r.y < text.y + text.height)).length;
        }"""
    )
    assert overlaps == 0


def test_the_failures_page_says_when_each_failure_happened(
    cluster: LocalCluster, dashboard: Dashboard, page: Any
) -> None:
    flow_id = cluster.submit(PANIC_FLOW)
    cluster.wait(flow_id)
    page.goto(f"{dashboard.url}failures")
    row = page.locator("#failures tr", has=page.locator(f'a:text("{flow_id}")'))
    row.wait_for()
    headers = page.locator("#failures th").all_text_contents()
    assert headers[0].lower() == "time", headers
    shown = row.locator("td").first.inner_text()
    assert re.search(r"\d{1,2}:\d{2}:\d{2}", shown), shown


def test_the_browser_gets_a_favicon_and_no_request_fails(dashboard: Dashboard, page: Any) -> None:
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(dashboard.url)
    page.locator("#flows").wait_for()
    icon = page.request.get(f"{dashboard.url}favicon.ico")
    assert icon.status == 200 and icon.headers["content-type"].startswith("image/"), icon.status
    assert failed == [], failed


def test_the_catalogue_lists_progdefs_and_types(
    dashboard: Dashboard, page: Any, tmp_path: Path
) -> None:
    page.goto(f"{dashboard.url}catalogue")
    page.locator("#progdefs").wait_for()
    text = page.locator("#progdefs").inner_text()
    assert "greet" in text and "name: dagyo.types.Text" in text
    assert "dagyo.types.TextPair" in page.locator("#types").inner_text()
    pair = page.locator('#types tr[data-type="dagyo.types.TextPair"]').inner_text()
    assert "Two texts, e.g. one pair of a cartesian product." in pair  # its doc comment
    page.screenshot(path=str(tmp_path / "dashboard-catalogue.png"))
