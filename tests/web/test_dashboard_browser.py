"""The dashboard in a real browser (Debian's chromium through playwright), served by
`redispool serve`, with a real worker process, on a real redis-server."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest

pytest.importorskip("starlette")
sync_api = pytest.importorskip("playwright.sync_api")

import redispool  # noqa: E402

from support.servers import free_port  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
XSS = "<script>alert(1)</script>"
APP = '''
import threading, redispool
worker = redispool.Worker(redispool.connect(), queues=["slow"], concurrency=2, lease=30, beat_interval=0.3)

@worker.process
def handle(job):
    threading.Event().wait(60)   # holds its jobs until killed
'''
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is not installed")]


@pytest.fixture
def system(redis_url, tmp_path):
    prefix = f"d{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {**os.environ, "REDISPOOL_URL": redis_url, "REDISPOOL_PREFIX": prefix,
           "REDISPOOL_TOKENS": "admin adm-token,read look-token"}
    # --no-sweep: a worker is marked stale until a sweeper removes it; serve's own sweeper
    # would remove it the moment it turns stale
    server = subprocess.Popen([sys.executable, "-m", "redispool", "serve", "--port", str(port),
                               "--worker-timeout", "2", "--no-sweep"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    (tmp_path / "slowapp.py").write_text(APP)
    # one process: a SIGKILLed command of several takes its workers down cleanly (they
    # deregister), and this test needs a worker that dies without a word
    worker = subprocess.Popen([sys.executable, "-m", "redispool", "worker", "slowapp:worker", "--processes", "1"],
                              env=env,
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    engine = redispool.connect(redis_url, prefix=prefix)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    import urllib.request
    while True:
        try:
            urllib.request.urlopen(base + "/login", timeout=1)
            break
        except Exception:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"dashboard did not start: {server.stderr.read().decode()[-2000:]}") from None
            time.sleep(0.1)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        try:
            yield engine, browser, base, worker
        finally:
            browser.close()
            for proc in (worker, server):
                if proc.poll() is None:
                    proc.kill()
                proc.wait(10)
            engine.close()


def sign_in(browser, base: str, token: str):
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))
    page.goto(base + "/")
    assert page.url.endswith("/login")
    page.fill("#token", token)
    page.click("button.primary")
    page.wait_for_url(base + "/")
    page.dialogs = dialogs
    return page


def test_workers_page_shows_jobs_in_progress_then_stale_after_sigkill(system):
    engine, browser, base, worker = system
    ids = engine.enqueue_many("slow", ["a", "b"])
    page = sign_in(browser, base, "adm-token")
    page.goto(base + "/workers")
    for job_id in ids:
        page.wait_for_selector(f'a[href="/queues/slow/jobs/{job_id}"]', timeout=10_000)
    assert page.locator(".badge.stale").count() == 0
    worker.send_signal(signal.SIGKILL)
    page.wait_for_selector(".badge.stale", timeout=10_000)  # the page refreshes itself
    page.close()


def test_dead_job_errors_retry_and_retry_all(system):
    engine, browser, base, _ = system
    job_id = engine.enqueue("mail", {"to": XSS}, max_attempts=2)
    for attempt in (1, 2):
        [job] = engine.claim("mail", "w")
        engine.fail(job, f"SMTPError: attempt {attempt} refused", delay=0)
    engine.enqueue_many("bulk", range(500), max_attempts=1)
    for _ in range(2):
        for job in engine.claim("bulk", "w", limit=250):
            engine.fail(job, "boom")
    page = sign_in(browser, base, "adm-token")
    page.goto(f"{base}/queues/mail/jobs/{job_id}")
    errors = page.locator("table pre").all_inner_texts()
    assert errors == ["SMTPError: attempt 2 refused", "SMTPError: attempt 1 refused"]
    assert XSS in page.inner_text("pre.payload"), "the payload is shown as text"
    page.click("button:has-text('Retry')")
    page.wait_for_selector(".flash")
    assert engine.get("mail", job_id).state == "ready"
    page.goto(f"{base}/queues/bulk?state=dead")
    page.click("button:has-text('Retry all 500 dead')")  # confirm() is accepted by the handler
    page.wait_for_selector(".flash")
    assert engine.stats("bulk")["dead"] == 0 and engine.stats("bulk")["ready"] == 500
    assert page.dialogs == ["Retry all dead jobs of bulk?"], "no script from a payload ran"
    page.close()


def test_enqueue_form(system):
    engine, browser, base, _ = system
    page = sign_in(browser, base, "adm-token")
    page.goto(base + "/enqueue")
    page.fill("#queue", "forms")
    page.fill("#payload", "{broken")
    page.click("button:has-text('Enqueue')")
    assert "not valid JSON" in page.inner_text("#payload-error")
    assert page.input_value("#payload") == "{broken", "what the user typed is kept"
    assert engine.queues() == [] or engine.stats("forms")["ready"] == 0
    page.fill("#payload", '{"hello": "world"}')
    page.fill("#priority", "7")
    page.click("button:has-text('Enqueue')")
    page.wait_for_selector(".flash")
    [job] = engine.jobs("forms", "ready")
    assert job.payload == {"hello": "world"} and job.priority == 7
    page.close()


def test_read_role_sees_no_buttons_and_forged_post_is_403(system):
    engine, browser, base, _ = system
    job_id = engine.enqueue("mail", XSS, max_attempts=1)
    [job] = engine.claim("mail", "w")
    engine.fail(job, "no")
    page = sign_in(browser, base, "look-token")
    for path in ("/", f"/queues/mail/jobs/{job_id}", "/queues/mail?state=dead", "/cues"):
        page.goto(base + path)
        assert page.locator("form[method=post] button").all_inner_texts() == ["Sign out"], path
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "rp_csrf")
    forged = page.context.request.post(f"{base}/queues/mail/jobs/{job_id}/retry", form={"csrf": csrf})
    assert forged.status == 403
    assert page.context.request.post(f"{base}/queues/mail/retry-all", form={}).status == 403
    assert engine.get("mail", job_id).state == "dead"
    page.close()


def test_refresh_keeps_selection(system):
    engine, browser, base, _ = system
    engine.enqueue_many("sel", range(5))
    page = sign_in(browser, base, "adm-token")
    page.goto(base + "/queues/sel")
    boxes = page.locator("input[name=ids]")
    boxes.nth(1).check()
    engine.enqueue("sel", "more")
    page.wait_for_function("document.querySelectorAll('input[name=ids]').length == 6", timeout=10_000)
    assert page.locator("input[name=ids]").nth(1).is_checked(), "a refresh kept the selection"
    page.close()


CARD = """([label, want]) => [...document.querySelectorAll("#overview-live .card")].some(
    (card) => card.querySelector(".l").textContent === label && card.querySelector(".n").textContent === want)"""


def test_job_page_and_overview_follow_the_event_log_without_reload(system):
    """A job completed elsewhere shows done on its page, and the overview's counters move,
    on their queue's events: well before the 30 s fallback refresh, with no reload."""
    engine, browser, base, _ = system
    job_id = engine.enqueue("live", {"n": 1})
    page = sign_in(browser, base, "adm-token")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{base}/queues/live/jobs/{job_id}")
    assert page.inner_text("#job-live .badge") == "ready"
    assert page.evaluate("document.body.dataset.fallback") == "30", "its timer is 30 s away: the feed must do it"
    page.evaluate("window.kept = true")   # gone if the page reloads
    [job] = engine.claim("live", "w")
    engine.complete(job, {"sent": True})
    page.wait_for_selector("#job-live .badge.done", timeout=10_000)
    assert page.evaluate("window.kept") is True, "updated in place"
    assert '"sent": true' in page.inner_text("#job-live"), "the result shows"
    assert page.locator("#job-actions button").all_inner_texts() == ["Delete"], "no Cancel for a done job"

    page.goto(base + "/")
    assert page.evaluate("document.body.dataset.fallback") == "30"
    page.wait_for_function(CARD, arg=["done", "1"], timeout=10_000)
    page.evaluate("window.kept = true")
    engine.enqueue("live", {"n": 2})
    [job] = engine.claim("live", "w")
    engine.complete(job)
    page.wait_for_function(CARD, arg=["done", "2"], timeout=10_000)
    page.wait_for_function(CARD, arg=["done last hour", "2"], timeout=10_000)   # the chart's figures
    assert page.evaluate("window.kept") is True, "updated in place"
    assert errors == []
    page.close()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_chromium_is_the_debian_one():
    assert os.path.realpath(shutil.which("chromium")).startswith("/usr/")
