"""What the dashboard costs Redis (issue 15 §8): an overview render reads one page of
queues whatever their number, tabs share what was read, and a tab never has two
refreshes in flight. On a real redis-server of its own (INFO commandstats counts every
command, those scripts run included)."""
from __future__ import annotations

import asyncio
import os
import re
import threading
import time

import pytest

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

import redispool  # noqa: E402
from redispool.dashboard import create_dashboard  # noqa: E402

from support.servers import RedisServer, free_port, need  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
QUEUES_PER_PAGE = 50   # the overview's page (figures.QUEUES_PER_PAGE)
PER_QUEUE = 20   # commands a queue of the page may cost: its stats script (and what it runs) and an HMGET


@pytest.fixture(scope="module")
def server():
    need("redis-server")
    s = RedisServer().start()
    yield s
    s.stop()


@pytest.fixture
def engine(server):
    e = redispool.connect(server.url, prefix=f"c{time.time_ns()}")
    yield e
    e.close()


def commands(engine) -> int:
    """Commands the server has run so far (the INFO asking included)."""
    return sum(v["calls"] for v in engine.client.info("commandstats").values())


def cost(engine, fn) -> int:
    before = commands(engine)
    fn()
    return commands(engine) - before - 1  # less the INFO of `before`


def make_queues(engine, start: int, stop: int) -> None:
    for i in range(start, stop):
        engine.enqueue(f"q{i:04d}", i)


def rows(html: str) -> list[str]:
    return re.findall(r'<a href="/queues/(q\d+)">', html)


def test_overview_costs_one_page_of_queues(engine):
    """Before: every queue was read on every render (1,000 queues: ~15,000 commands)."""
    app = TestClient(create_dashboard(engine, cache_s=0))
    make_queues(engine, 0, 200)
    with_200 = cost(engine, lambda: app.get("/"))
    make_queues(engine, 200, 1000)
    r = None

    def render() -> None:
        nonlocal r
        r = app.get("/")
    with_1000 = cost(engine, render)
    assert with_1000 <= QUEUES_PER_PAGE * PER_QUEUE, with_1000
    assert abs(with_1000 - with_200) <= 2, (with_200, with_1000)
    assert r.status_code == 200 and rows(r.text) == [f"q{i:04d}" for i in range(QUEUES_PER_PAGE)]
    assert "page 1 of 20" in r.text and "of 1,000" in r.text
    last = app.get("/?page=19").text
    assert rows(last) == [f"q{i:04d}" for i in range(950, 1000)]
    assert rows(app.get("/?page=999").text) == rows(last)  # past the end: the last page
    found = app.get("/?q=Q09").text  # a filter, any case
    assert rows(found) == [f"q{i:04d}" for i in range(900, 950)] and "page 1 of 2" in found
    assert rows(app.get("/?q=q09&page=1").text) == [f"q{i:04d}" for i in range(950, 1000)]
    assert "no queue matches" in app.get("/?q=nothing").text
    from redispool.dashboard import figures
    assert figures.QUEUES_PER_PAGE == QUEUES_PER_PAGE
    # the cards add up the queues shown: jobs q0000..q0049 hold one ready job each
    assert re.search(r'<div class="n">50</div><div class="l">ready</div>', r.text)
    engine.client.script_flush()  # as after a Redis restart: the pipeline loads the scripts again
    engine.client.function_flush()
    assert rows(app.get("/").text) == [f"q{i:04d}" for i in range(QUEUES_PER_PAGE)]


def test_tabs_share_one_read(engine):
    """Ten tabs refreshing at once cost one render; an action shows at once anyway."""
    make_queues(engine, 0, 120)
    app = create_dashboard(engine, cache_s=30)
    single = cost(engine, lambda: TestClient(create_dashboard(engine, cache_s=0)).get("/"))
    tabs = [TestClient(app) for _ in range(10)]
    start = threading.Barrier(len(tabs))
    pages: list[int] = []

    def tab(client: TestClient) -> None:
        start.wait()
        for _ in range(3):
            pages.append(client.get("/", headers={"X-Live": "1"}).status_code)

    def all_tabs() -> None:
        threads = [threading.Thread(target=tab, args=(c,)) for c in tabs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    shared = cost(engine, all_tabs)
    assert pages == [200] * 30
    assert shared <= single + 2, (single, shared)
    # an action clears what was kept: the next page shows the paused queue
    admin = tabs[0]
    admin.get("/queues/q0001")
    r = admin.post("/queues/q0001/pause", data={"csrf": admin.cookies["rp_csrf"]}, follow_redirects=False)
    assert r.status_code == 303
    assert re.search(r'q0001</a> <span class="badge paused">', admin.get("/").text)


class _Slow:
    """An ASGI wrapper holding each live refresh ``delay_s`` before answering."""

    def __init__(self, app, delay_s: float) -> None:
        self.app, self.delay_s = app, delay_s

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and (b"x-live", b"1") in scope.get("headers", []):
            await asyncio.sleep(self.delay_s)
        await self.app(scope, receive, send)


# counts the page's live refreshes (fetches with X-Live) in flight; chromium itself would
# queue identical GETs behind one another (its cache lock), so the server cannot tell
COUNT_FETCHES = """
window.__live = {now: 0, most: 0, seen: 0};
const plainFetch = window.fetch;
window.fetch = function (input, init) {
  if (!(init && init.headers && init.headers["X-Live"])) return plainFetch.apply(this, arguments);
  __live.now++; __live.seen++; __live.most = Math.max(__live.most, __live.now);
  return plainFetch.apply(this, arguments).finally(function () { __live.now--; });
};
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is not installed")
def test_a_tab_never_has_two_refreshes_in_flight(engine):
    """Refresh every 0.2 s against a server taking 1 s per refresh: the next refresh waits
    for the last (before, setInterval started one every 0.2 s and they piled up)."""
    import uvicorn
    sync_api = pytest.importorskip("playwright.sync_api")
    make_queues(engine, 0, 3)
    port = free_port()
    dashboard = create_dashboard(engine, refresh_s=0.2, fallback_s=0.2)   # the overview follows events: its timer
    server = uvicorn.Server(uvicorn.Config(_Slow(dashboard, delay_s=1.0),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM)
            try:
                page = browser.new_page()
                page.add_init_script(COUNT_FETCHES)
                page.goto(f"http://127.0.0.1:{port}/")
                deadline = time.monotonic() + 30
                while (live := page.evaluate("window.__live"))["seen"] < 4:
                    assert time.monotonic() < deadline, f"only {live['seen']} refreshes"
                    page.wait_for_timeout(100)
            finally:
                browser.close()
    finally:
        server.should_exit = True
        thread.join(20)
    assert live["most"] == 1, f"{live['most']} refreshes of one tab were in flight at once"
