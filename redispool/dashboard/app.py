"""The web dashboard: overview, workers, queues, jobs, cues, webhooks, enqueue, and the actions.

``create_dashboard(engine, tokens=...)`` returns a Starlette app (``redispool serve``
mounts it at ``/``). Roles are those of the HTTP API: ``admin`` sees and acts, ``read``
(and ``worker``) only sees; the action routes answer 403 to them. With ``tokens`` a
sign-in page takes a token and keeps it in an HttpOnly, SameSite=Strict cookie; without
tokens everyone is admin (``redispool serve`` allows that on a loopback address only).
Every action is a POST carrying a CSRF token that must match the ``rp_csrf`` cookie.
Pages never fetch a whole state: lists are pages of 50, and the overview shows 50 queues
at a time; what the live pages read is shared between tabs for ``cache_s`` (figures.py).
The overview, a queue and a job look again when their queues' event logs say something
changed (``/dashboard/events``, live.py), and every ``fallback_s`` besides; the workers,
cues and webhooks pages (hooks.py), which time changes too, every ``refresh_s``.
"""
from __future__ import annotations

import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..engine import Engine
from ..errors import ConnectionFailed, RedisFull, RedispoolError
from ..keys import QUEUE_NAME
from ..web import outage
from ..web.access import audit, clean, note
from ..web.auth import allows, cookie_role, same, token_role
from ..web.body import BadInput, check_depth, loads
from ..web.endpoint import call
from ..web.waiting import LoopEngines
from . import figures, live
from .hooks import WebhookPages, shown
from .views import STATES, Page, age, chart, e, kept, limits_form, pager, progress_bar, table, u, when

PAGE_SIZE = 50
STATIC = Path(__file__).resolve().parent / "static"
TOKEN_COOKIE, CSRF_COOKIE = "rp_token", "rp_csrf"

Form = dict[str, Any]                                   # an action's form fields ("ids": a list)
Render = Callable[[Request, Page], str | Response]      # a page: its HTML, or a response of its own
Act = Callable[[Request, Form], str]                    # an action: where to go next


class Forbidden(Exception):
    """A role that may only look tried to act (answered 403)."""


class NotFound(RedispoolError, LookupError):
    """A page or action names a queue or job that is not there (or cannot be)."""


class Refused(RedispoolError, ValueError):
    """An action that cannot be done as asked; the page it came from says why."""


def create_dashboard(engine: Engine, *, tokens: Mapping[str, str] | None = None,
                     worker_timeout: float = 60.0, refresh_s: float = 3.0, fallback_s: float = 30.0,
                     secure_cookies: bool = False, cache_s: float = 1.0,
                     waits: LoopEngines | None = None) -> Starlette:
    """The dashboard app over ``engine``; ``tokens`` maps token -> role (a dict is kept, not
    copied, so ``redispool serve`` reloading it on SIGHUP reaches the dashboard too);
    ``refresh_s``: how often the pages without a live feed look again (all of them when
    ``engine`` writes no events); ``fallback_s``: how often the others do besides;
    ``cache_s``: how long what the live pages read is shared between tabs (0: not at all);
    ``waits``: the server's async engines and shutdown switch (``redispool serve`` passes
    its API's, so SIGTERM ends the live feeds too; None: the dashboard's own)."""
    kept = tokens if isinstance(tokens, dict) else dict(tokens) if tokens else None
    dash = _Dashboard(engine, kept or None, worker_timeout, refresh_s, secure_cookies, cache_s,
                      fallback_s=fallback_s, waits=waits)
    return Starlette(routes=dash.routes(), exception_handlers={Forbidden: dash.forbidden})


class _Dashboard(WebhookPages):
    def __init__(self, engine: Engine, tokens: dict[str, str] | None, worker_timeout: float,
                 refresh_s: float, secure: bool, cache_s: float = 1.0, *, fallback_s: float = 30.0,
                 waits: LoopEngines | None = None) -> None:
        self.engine, self.tokens = engine, tokens
        self.worker_timeout, self.refresh_s, self.secure = worker_timeout, refresh_s, secure
        self.fallback_s = fallback_s
        self.shared = figures.Shared(cache_s)   # reads of the live pages, shared between tabs
        self.waits = waits or LoopEngines(engine)   # the live feeds' async engine and shutdown switch
        self.live = engine.events_max > 0       # an engine that writes no events has no feed to follow

    # ------------------------------------------------------------------ plumbing
    def routes(self) -> list[Route | Mount]:
        def get(path: str, render: Render) -> Route:
            return Route(path, self.view(render), methods=["GET"])

        def post(path: str, act: Act) -> Route:
            return Route(path, self.action(act), methods=["POST"])
        return [
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route(live.PATH, self.events, methods=["GET"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
            get("/", self.overview), get("/workers", self.workers), get("/cues", self.cues),
            get("/webhooks", self.webhooks), get("/webhooks/{name}", self.webhook),
            get("/enqueue", self.enqueue_page), get("/find", self.find),
            get("/queues/{queue}", self.queue), get("/queues/{queue}/jobs/{job_id:path}", self.job),
            get("/workflows/{workflow_id:path}", self.workflow),
            Route("/enqueue", self.enqueue, methods=["POST"]),
            post("/queues/{queue}/pause", lambda r, p: self.queue_action(r, "pause")),
            post("/queues/{queue}/resume", lambda r, p: self.queue_action(r, "resume")),
            post("/queues/{queue}/purge", self.purge), post("/queues/{queue}/retry-all", self.retry_all),
            post("/queues/{queue}/bulk", self.bulk), post("/queues/{queue}/limits", self.set_limits),
            post("/queues/{queue}/jobs/{job_id:path}/retry", lambda r, p: self.job_action(r, "retry")),
            post("/queues/{queue}/jobs/{job_id:path}/cancel", lambda r, p: self.job_action(r, "cancel")),
            post("/queues/{queue}/jobs/{job_id:path}/delete", lambda r, p: self.job_action(r, "delete")),
            post("/cues/{queue}/{name}/{verb}", self.cue_action),
            post("/webhooks/{name}/remove", self.webhook_remove),
            post("/workflows/{workflow_id:path}/cancel", self.workflow_cancel),
        ]

    def role(self, request: Request) -> str | None:
        """The role of the signed-in token cookie (admin without tokens); None: sign in."""
        return cookie_role(request.cookies.get(TOKEN_COOKIE), self.tokens)

    def may_act(self, request: Request, form: Mapping[str, Any]) -> Response | None:
        """None when the request may act: signed in, with the CSRF token of its cookie, as
        admin (else Forbidden); otherwise the refusal, audited."""
        role = self.role(request)
        note(request, role=role or "-")
        if role is None:
            _audit(request, "-", "refused: not signed in")
            return PlainTextResponse("sign in first", status_code=401)
        if not _csrf_ok(request, form):
            _audit(request, role, "refused: missing or wrong CSRF token")
            return PlainTextResponse("missing or wrong CSRF token", status_code=403)
        if not allows(role, "admin"):
            _audit(request, role, "refused: role may only look")
            raise Forbidden()
        return None

    def page(self, request: Request, role: str) -> Page:
        csrf = request.cookies.get(CSRF_COOKIE) or request.state.new_csrf
        return Page(role, csrf, self.refresh_s, request.query_params.get("msg", ""),
                    request.query_params.get("err") == "1", signed_in=self.tokens is not None,
                    fallback_s=self.fallback_s)

    def feed(self, request: Request, queues: list[str], cursor: Callable[[], str],
             job: str | None = None) -> str | None:
        """The live feed of a page showing ``queues`` (none: every queue) from ``cursor()``
        (read before the page's figures); None when there is none to follow, and for the
        page's own refreshes (it follows its feed already: no cursor to read)."""
        if not self.live or request.headers.get("x-live"):
            return None
        return live.feed_url(queues, cursor(), job)

    def _csrf(self, request: Request) -> str | None:
        """A fresh CSRF token when the request has no cookie yet (set on the response)."""
        if request.cookies.get(CSRF_COOKIE):
            request.state.new_csrf = None
            return None
        token = secrets.token_urlsafe(24)
        request.state.new_csrf = token
        return token

    def _cookie(self, request: Request, response: Response, name: str, value: str) -> None:
        """An HttpOnly, SameSite=Strict cookie; Secure with ``secure_cookies`` or when the
        page was reached over TLS (directly, or ``X-Forwarded-Proto: https`` from a proxy)."""
        forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        secure = self.secure or request.url.scheme == "https" or forwarded == "https"
        response.set_cookie(name, value, httponly=True, samesite="strict", secure=secure, path="/")

    def view(self, render: Render) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            new = self._csrf(request)
            role = self.role(request)
            note(request, role=role or "-")
            if role is None:
                return RedirectResponse("/login", status_code=303)
            try:
                out = render(request, self.page(request, role))
            except (ConnectionFailed, RedisFull) as exc:  # the address goes to the log, not the page
                code = outage.kind(exc)
                message, headers = outage.public(code, str(exc), request.url.path)
                out = HTMLResponse(self.page(request, role).layout("Redis trouble", f"<h1>{e(message)}</h1>"),
                                   status_code=507 if code == "redis_full" else 503, headers=headers)
            except RedispoolError as exc:
                out = HTMLResponse(self.page(request, role).layout("Not found", f"<h1>{e(exc)}</h1>"),
                                   status_code=404)
            response = out if isinstance(out, Response) else HTMLResponse(out)
            if new:
                self._cookie(request, response, CSRF_COOKIE, new)
            return response
        return endpoint

    def action(self, act: Act) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            form: Form = dict(await request.form())
            form["ids"] = (await request.form()).getlist("ids")
            refused = self.may_act(request, form)
            if refused is not None:
                return refused
            role = "admin"
            try:
                target = await call(act, request, form)
            except (ConnectionFailed, RedisFull) as exc:
                _audit(request, role, f"failed: {outage.kind(exc)}")
                return _trouble(request, exc)
            except RedispoolError as exc:
                _audit(request, role, f"failed: {exc}")
                self.shared.clear()
                back = request.headers.get("referer") or "/"
                return RedirectResponse(_with(back, msg=str(exc), err="1"), status_code=303)
            self.shared.clear()  # the next page shows what the action did
            _audit(request, role, "done" + _form_note(form))
            return RedirectResponse(target, status_code=303)
        return endpoint

    async def events(self, request: Request) -> Response:
        """A page's live feed (live.py), for a signed-in session like the pages."""
        role = self.role(request)
        note(request, role=role or "-")
        return await live.answer(self.waits, request, signed_in=role is not None)

    async def forbidden(self, request: Request, exc: Exception) -> Response:
        return PlainTextResponse("forbidden: this role may only look", status_code=403)

    # ------------------------------------------------------------------ sign-in
    async def login_page(self, request: Request) -> Response:
        if self.tokens is None:
            return RedirectResponse("/", status_code=303)
        failed = request.query_params.get("failed") == "1"
        note = '<p class="field-error">That token is not valid.</p>' if failed else ""
        body = (f'<div class="login"><h1>Sign in to redispool</h1>{note}<form method="post" action="/login">'
                f'<label for="token">Access token</label><input type="password" id="token" name="token" '
                f'autocomplete="current-password" autofocus><button class="primary">Sign in</button></form></div>')
        page = f'<!doctype html><html><head><meta charset="utf-8"><title>Sign in · redispool</title>' \
               f'<link rel="stylesheet" href="/static/dashboard.css"></head><body>{body}</body></html>'
        return HTMLResponse(page, status_code=401 if failed else 200)

    async def login(self, request: Request) -> Response:
        token = str((await request.form()).get("token", ""))
        if self.tokens is None:
            return RedirectResponse("/", status_code=303)
        role = token_role(token, self.tokens)
        note(request, role=role or "-")
        if role is None:
            _audit(request, "-", "login refused: not a valid token")
            return RedirectResponse("/login?failed=1", status_code=303)
        _audit(request, role, "login")
        response = RedirectResponse("/", status_code=303)
        self._cookie(request, response, TOKEN_COOKIE, token)
        self._cookie(request, response, CSRF_COOKIE, secrets.token_urlsafe(24))
        return response

    async def logout(self, request: Request) -> Response:
        if not _csrf_ok(request, await request.form()):
            return PlainTextResponse("missing or wrong CSRF token", status_code=403)
        _audit(request, self.role(request) or "-", "logout")
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(TOKEN_COOKIE, path="/")
        return response

    # ------------------------------------------------------------------ pages
    def overview(self, request: Request, p: Page) -> str:
        """Cards and chart of the queues shown, and a page of queues (sorted, filtered):
        its Redis cost is that of one page, whatever the number of queues (figures.py)."""
        needle = request.query_params.get("q", "").strip()[:128]
        wanted = _int(request.query_params.get("page"), 0)
        since = live.since(request)   # a refresh for this event must not show figures read before it
        o: figures.Overview = self.shared.get(("overview", needle, wanted),
                                              lambda: figures.overview(self.engine, wanted, needle),
                                              (lambda kept: kept.at_ms > since) if since else None)
        totals = {st: sum(o.stats[n][st] for n in o.names) for st in STATES}
        done_1m, failed_1m = o.hour[-1][1], o.hour[-1][2]
        done_1h, failed_1h = sum(d for _, d, _ in o.hour), sum(f for _, _, f in o.hour)
        cards = "".join(f'<div class="card"><div class="n">{n:,}</div><div class="l">{e(label)}</div></div>'
                        for label, n in [*((s, totals[s]) for s in STATES), ("done last minute", done_1m),
                                         ("failed last minute", failed_1m), ("done last hour", done_1h),
                                         ("failed last hour", failed_1h)])
        queue_rows = []
        for name in o.names:
            s, h = o.stats[name], o.history[name]
            paused = ' <span class="badge paused">paused</span>' if s["paused"] else ""
            queue_rows.append([f'<a href="/queues/{u(name)}">{e(name)}</a>{paused}',
                               *(f'{s[st]:,}' for st in STATES), f'{s["latency"]:.1f}s',
                               f"{h[-1][1]:,} / {h[-1][2]:,}", f"{sum(x[1] for x in h):,} / {sum(x[2] for x in h):,}"])
        partial = len(o.names) < o.total
        scope = (f"the {len(o.names):,} queues shown ({o.matching:,} match, {o.total:,} in all)" if partial
                 else "all queues")
        first = o.page * figures.QUEUES_PER_PAGE
        where = (f'<p class="muted">Queues {first + 1:,}-{first + len(o.names):,} of {o.matching:,}'
                 f'{" matching " + e(repr(needle)) if needle else ""}, by name. Figures are of {e(scope)}.</p>'
                 if o.names else "")
        filter_form = (f'<form method="get" action="/" class="inline"><input type="text" name="q" value="{e(needle)}" '
                       f'placeholder="queue name contains" aria-label="filter queues"> <button>Filter</button></form>')
        params = {"q": needle} if needle else {}
        body = (f'<h1>Overview</h1><div class="actions">{filter_form}</div><div id="overview-live" data-live>'
                f'<div class="cards">{cards}</div>'
                f'<h2>Done and failed per minute, last hour ({e(scope)})</h2><div class="chart">{chart(o.hour)}</div>'
                f'<h2>Queues</h2>{where}'
                + table(["queue", *STATES, "latency", "done / failed 1 min", "done / failed 1 h"], queue_rows,
                        numeric=range(1, 10), empty="no queue matches" if needle else "no queues yet")
                + (pager("/", params, o.page, o.page + 1 < o.pages, ("← previous", "next →"), o.pages)
                   if o.pages > 1 else "")
                + "</div>")
        every = o.total <= figures.QUEUES_PER_PAGE   # all fit on a page: follow them all, so a new one shows
        feed = (self.feed(request, [] if every else o.names, lambda: live.clock_cursor(self.engine, o.at_ms))
                if every or o.names else None)
        return p.layout("Overview", body, "/", feed=feed)

    def workers(self, request: Request, p: Page) -> str:
        now = time.time()
        infos = self.shared.get(("workers",), lambda: self.engine.workers(timeout=max(self.worker_timeout * 10, 3600)))
        rows = []
        for w in sorted(infos, key=lambda w: w.id):
            stale = now - w.last_heartbeat > self.worker_timeout
            beat = f'{e(age(w.last_heartbeat, now))}' + (' <span class="badge stale">stale</span>' if stale else "")
            jobs = ", ".join(_job_link(ref) for ref in w.jobs_in_progress[:20]) or '<span class="muted">idle</span>'
            if len(w.jobs_in_progress) > 20:
                jobs += f" … +{len(w.jobs_in_progress) - 20}"
            rate = f"{100 * w.failed / w.processed:.1f}%" if w.processed else "-"
            up = age(w.started_at, now).replace(" ago", "")
            rows.append([e(w.id), e(w.host), e(w.pid), e(", ".join(w.queues)), e(up),
                         beat, jobs, f"{w.processed:,}", f"{w.failed:,}", rate])
        body = (f'<h1>Workers</h1><div id="workers-live" data-live><p class="muted">{len(infos)} registered; '
                f'stale after {self.worker_timeout:g}s without a heartbeat.</p>'
                + table(["id", "host", "pid", "queues", "uptime", "last heartbeat", "jobs in progress",
                         "processed", "failed", "error rate"], rows, numeric=(7, 8, 9), empty="no workers")
                + "</div>")
        return p.layout("Workers", body, "/workers")

    def queue(self, request: Request, p: Page) -> str:
        name = _queue(request.path_params["queue"])
        state = request.query_params.get("state", "ready")
        if state not in STATES:
            state = "ready"
        page_no = _int(request.query_params.get("page"), 0)
        feed = self.feed(request, [name], lambda: live.queue_cursor(self.engine, name))
        s = self.engine.stats(name)
        infos = self.engine.jobs(name, state, limit=PAGE_SIZE + 1, offset=page_no * PAGE_SIZE)
        more, infos = len(infos) > PAGE_SIZE, infos[:PAGE_SIZE]
        tabs = "".join(f'<a class="{"on" if st == state else ""}" href="/queues/{u(name)}?state={st}">'
                       f'{st} <span class="badge">{s[st]:,}</span></a>' for st in STATES)
        q = f"/queues/{u(name)}"
        actions = ""
        if p.admin:
            actions = (p.button(f"{q}/resume" if s["paused"] else f"{q}/pause", "Resume" if s["paused"] else "Pause")
                       + (p.button(f"{q}/retry-all", f"Retry all {s['dead']:,} dead",
                                   confirm=f"Retry all dead jobs of {name}?") if s["dead"] else "")
                       + p.form(f"{q}/purge", f'<input type="hidden" name="state" value="{e(state)}">'
                                f'<button class="danger">Purge {e(state)}</button>',
                                confirm=f"Delete every {state} job of {name} for good?"))
        find = (f'<form method="get" action="/find" class="inline"><input type="hidden" name="queue" value="{e(name)}">'
                f'<input type="text" name="id" placeholder="job id" aria-label="job id"> <button>Open</button></form>')
        check = '<input type="checkbox" data-select-all aria-label="select all">' if p.admin else ""
        rows = []
        for j in infos:
            box = (f'<input type="checkbox" name="ids" value="{e(j.id)}" aria-label="select {e(j.id)}">'
                   if p.admin else "")
            rows.append([box, f'<a href="{q}/jobs/{u(j.id)}">{e(j.id)}</a>', f"{j.attempts}/{j.max_attempts}",
                         e(j.priority), f'<span style="white-space:nowrap">{e(when(j.created_at))}</span>',
                         e(age(j.updated_at)), e(_short(j.payload)),
                         e((j.error or "")[:120])])
        listing = table([check, "id", "attempts", "priority", "created", "updated", "payload", "last error"], rows,
                        empty=f"no {state} jobs")
        bulk = ""
        if p.admin and infos:
            bulk = ('<div class="actions"><button name="action" value="retry">Retry selected</button>'
                    '<button name="action" value="cancel" class="danger">Cancel selected</button></div>')
            listing = p.form(f"{q}/bulk", f'<input type="hidden" name="state" value="{e(state)}">{listing}{bulk}',
                             cls="bulk")
        paused = ' <span class="badge paused">paused</span>' if s["paused"] else ""
        body = (f'<h1>Queue {e(name)}{paused}</h1><div class="actions">{actions}{find}</div>'
                + limits_form(p, q, s["limits"]) +
                f'<div id="queue-tabs" data-live><div class="tabs">{tabs}</div>'
                f'<p class="muted">latency {s["latency"]:.1f}s · lifetime: '
                + " · ".join(f"{k} {v:,}" for k, v in s["totals"].items()) + "</p></div>"
                f'<div id="queue-live" data-live>{listing}</div>'
                + pager(q, {"state": state}, page_no, more))
        return p.layout(f"Queue {name}", body, feed=feed)

    def job(self, request: Request, p: Page) -> str | Response:
        name, job_id = _queue(request.path_params["queue"]), request.path_params["job_id"]
        feed = self.feed(request, [name], lambda: live.queue_cursor(self.engine, name), job_id)
        info = self.engine.get(name, job_id)
        if info is None:
            body = f'<h1>No job {e(job_id)} in {e(name)}</h1><p>It never existed, or it was trimmed or purged.</p>'
            return HTMLResponse(p.layout("Job not found", body), status_code=404)
        base = f"/queues/{u(name)}/jobs/{u(job_id)}"
        actions = ""
        if info.state == "dead":
            actions += p.button(f"{base}/retry", "Retry")
        if info.state in ("waiting", "scheduled", "ready", "leased"):
            actions += p.button(f"{base}/cancel", "Cancel", danger=True)
        actions += p.button(f"{base}/delete", "Delete", danger=True, confirm=f"Delete job {job_id} for good?")
        fields = [("state", f'<span class="badge {e(info.state)}">{e(info.state)}</span>'),
                  ("queue", f'<a href="/queues/{u(name)}">{e(name)}</a>'),
                  ("attempts", f"{info.attempts} of {info.max_attempts}"), ("priority", e(info.priority)),
                  ("lease", e(f"{info.lease:g}s" if info.lease else "the worker's")),
                  ("timeout", e(f"{info.timeout:g}s" if info.timeout else "the worker's")),
                  ("unique key", e(info.unique_key or "-")), ("worker", e(info.worker_id or "-")),
                  ("created", e(when(info.created_at))), ("updated", e(when(info.updated_at)))]
        for label, value in (("runs at", info.run_at), ("lease expires", info.lease_expires_at),
                             ("finished", info.finished_at)):
            if value:
                fields.append((label, e(when(value))))
        if info.progress is not None:
            fields.append(("progress", progress_bar(info.progress)))
        if info.depends_on:
            parents = ", ".join(f'<a href="/queues/{u(pq)}/jobs/{u(pid)}">{e(pq)}/{e(pid)}</a>'
                                for pq, pid in info.depends_on)
            fields.append(("depends on", f"{parents} ({e(info.dependency_mode or 'all')})"))
        flow = self.engine.workflow_of(name, job_id)
        if flow is not None:
            fields.append(("workflow", f'<a href="/workflows/{u(flow)}">{e(flow)}</a>'))
        kv = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in fields)
        errors = table(["attempt", "at", "error"],
                       [[e(a), e(when(at)), f"<pre>{e(err)}</pre>"] for a, err, at in info.errors],
                       empty="no errors")
        body = (f'<h1>Job {e(job_id)}</h1><div class="actions" id="job-actions" data-live>{actions}</div>'
                f'<div id="job-live" data-live><dl class="kv">{kv}</dl>'
                f'<h2>Payload</h2><pre class="payload">{e(kept(info.payload, info.payload_dropped))}</pre>'
                f'<h2>Result</h2><pre>{e(kept(info.result, info.result_dropped))}</pre>'
                f'<h2>Errors (latest first, last 10 attempts)</h2>{errors}</div>')
        return p.layout(f"Job {job_id}", body, feed=feed)

    def workflow(self, request: Request, p: Page) -> str:
        """A workflow: its status, then its nodes (queue, job, state, what each waits for)."""
        flow = self.engine.workflow(request.path_params["workflow_id"])   # WorkflowNotFound: the 404 page
        rows = []
        for key, (queue, job_id) in flow.jobs.items():
            state = flow.states.get(key)
            badge = f'<span class="badge {e(state)}">{e(state)}</span>' if state else '<span class="muted">gone</span>'
            parents = ", ".join(e(k) for k in flow.depends_on.get(key, [])) or '<span class="muted">-</span>'
            if len(flow.depends_on.get(key, [])) > 1:
                parents += f' <span class="muted">({e(flow.dependency_mode.get(key, "all"))})</span>'
            rows.append([e(key), f'<a href="/queues/{u(queue)}">{e(queue)}</a>',
                         f'<a href="/queues/{u(queue)}/jobs/{u(job_id)}">{e(job_id)}</a>', badge, parents])
        counts: dict[str, int] = {}
        for state in flow.states.values():
            counts[state or "gone"] = counts.get(state or "gone", 0) + 1
        summary = ", ".join(f"{n} {e(state)}" for state, n in sorted(counts.items()))
        actions = ""
        if flow.status == "running":
            actions = p.button(f"/workflows/{u(flow.id)}/cancel", "Cancel workflow", danger=True,
                               confirm=f"Cancel every unfinished job of workflow {flow.id}?")
        fields = [("status", f'<span class="badge {e(flow.status)}">{e(flow.status)}</span>'),
                  ("name", e(flow.name)), ("id", f"<code>{e(flow.id)}</code>"),
                  ("created", e(when(flow.created_at))), ("jobs", f"{len(flow.jobs)}: {summary}")]
        if flow.cancelled_at:
            fields.append(("cancelled", e(when(flow.cancelled_at))))
        kv = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in fields)
        body = (f'<h1>Workflow {e(flow.name)}</h1><div class="actions">{actions}</div><dl class="kv">{kv}</dl>'
                "<h2>Jobs (parents first)</h2>"
                + table(["key", "queue", "job", "state", "depends on"], rows, empty="no jobs"))
        return p.layout(f"Workflow {flow.name}", body)

    def workflow_cancel(self, request: Request, form: Form) -> str:
        flow_id = request.path_params["workflow_id"]
        n = self.engine.cancel_workflow(flow_id)
        return _with(f"/workflows/{u(flow_id)}", msg=f"cancelled {n} job(s)")

    def find(self, request: Request, p: Page) -> Response:
        name = _queue(request.query_params.get("queue", ""))
        job_id = request.query_params.get("id", "").strip()
        if not job_id:
            return RedirectResponse(f"/queues/{u(name)}", status_code=303)
        return RedirectResponse(f"/queues/{u(name)}/jobs/{u(job_id)}", status_code=303)

    def cues(self, request: Request, p: Page) -> str:
        rows = []
        for c in self.shared.get(("cues",), self.engine.cues):
            base = f"/cues/{u(c.queue)}/{u(c.name)}"
            buttons = (p.button(f"{base}/resume" if c.paused else f"{base}/pause", "Resume" if c.paused else "Pause")
                       + p.button(f"{base}/run", "Run now")
                       + p.button(f"{base}/remove", "Remove", danger=True, confirm=f"Remove cue {c.name}?"))
            paused = '<span class="badge paused">paused</span>' if c.paused else "active"
            target = f'<br><span class="muted">POSTed to <code>{e(shown(c.url, 80))}</code></span>' if c.url else ""
            rows.append([f'<a href="/queues/{u(c.queue)}">{e(c.queue)}</a>', e(c.name) + target,
                         f"<code>{e(c.cron)}</code>",
                         e(c.tz), e(when(c.next_fire_at, c.tz)), e(when(c.next_fire_at)),
                         e(when(c.last_fire_at, c.tz)), e(c.misfire), paused, buttons])
        body = ('<h1>Cues</h1><div id="cues-live" data-live>'
                + table(["queue", "name", "cron", "zone", "next fire (its zone)", "next fire (UTC)", "last fire",
                         "misfire", "state", ""], rows, empty="no cues") + "</div>")
        return p.layout("Cues", body, "/cues")

    def enqueue_page(self, request: Request, p: Page, values: dict[str, str] | None = None,
                     errors: dict[str, str] | None = None) -> Response:
        if not p.admin:
            return HTMLResponse(p.layout("Enqueue", "<h1>Only admins can enqueue</h1>"), status_code=403)
        v = {"queue": request.query_params.get("queue", ""), "payload": "{}", "priority": "0", "delay": "",
             "max_attempts": "3", "lease": "", "unique_key": "", **(values or {})}
        err = errors or {}

        def field(name: str, label: str, kind: str = "text") -> str:
            note = f'<div class="field-error" id="{name}-error">{e(err[name])}</div>' if name in err else ""
            if kind == "textarea":
                control = f'<textarea id="{name}" name="{name}">{e(v[name])}</textarea>'
            else:
                control = f'<input type="text" id="{name}" name="{name}" value="{e(v[name])}">'
            return f'<p><label for="{name}">{label}</label><br>{control}{note}</p>'

        body = ('<h1>Enqueue a job</h1>'
                + p.form("/enqueue", field("queue", "Queue") + field("payload", "Payload (JSON)", "textarea")
                         + field("priority", "Priority (-1000..1000)") + field("delay", "Delay (seconds)")
                         + field("max_attempts", "Max attempts") + field("lease", "Lease (seconds)")
                         + field("unique_key", "Unique key") + '<button class="primary">Enqueue</button>',
                         cls="enqueue"))
        return HTMLResponse(p.layout("Enqueue", body, "/enqueue"), status_code=400 if err else 200)

    # ------------------------------------------------------------------ actions
    async def enqueue(self, request: Request) -> Response:
        """Enqueue from the form; bad input is shown next to its field and writes nothing."""
        form = {k: str(v) for k, v in (await request.form()).items()}
        refused = self.may_act(request, form)
        if refused is not None:
            return refused
        role = "admin"
        request.state.new_csrf = None
        errors: dict[str, str] = {}
        options: dict[str, Any] = {}
        queue = form.get("queue", "").strip()
        if not QUEUE_NAME.fullmatch(queue):
            errors["queue"] = "1-128 characters of A-Za-z0-9_.:-"
        try:   # read as the API reads a body: strict JSON, nested at most 100 levels (it can be handed back)
            payload = check_depth(loads(form.get("payload", "") or "null"))
        except BadInput as exc:
            errors["payload"] = str(exc).replace("the body", "the payload")
        for name, convert in (("priority", int), ("delay", float), ("max_attempts", int), ("lease", float)):
            text = form.get(name, "").strip()
            if text:
                try:
                    options[name] = convert(text)
                except ValueError:
                    errors[name] = f"must be a {'whole ' if convert is int else ''}number"
        if form.get("unique_key", "").strip():
            options["unique_key"] = form["unique_key"].strip()
        if not errors:
            try:
                job_id = await call(lambda: self.engine.enqueue(queue, payload, **options))
            except (ConnectionFailed, RedisFull) as exc:
                return _trouble(request, exc)
            except RedispoolError as exc:
                message = str(exc)
                field = next((f for f in ("priority", "delay", "max_attempts", "lease", "unique_key", "payload")
                              if f.split("_")[0] in message), "payload")
                errors[field] = message
            else:
                self.shared.clear()
                _audit(request, role, f"done: job {job_id} in {queue}")
                return RedirectResponse(f"/queues/{u(queue)}/jobs/{u(job_id)}?" + urlencode(
                    {"msg": f"enqueued job {job_id}"}), status_code=303)
        return self.enqueue_page(request, self.page(request, role), values=form, errors=errors)

    def queue_action(self, request: Request, verb: str) -> str:
        name = _queue(request.path_params["queue"])
        getattr(self.engine, verb)(name)
        return f"/queues/{u(name)}?" + urlencode({"msg": f"{name} {verb}d"})

    def purge(self, request: Request, form: Form) -> str:
        name, state = _queue(request.path_params["queue"]), str(form.get("state", ""))
        n = self.engine.purge(name, state)
        return f"/queues/{u(name)}?" + urlencode({"state": state, "msg": f"purged {n} {state} job(s)"})

    def retry_all(self, request: Request, form: Form) -> str:
        name = _queue(request.path_params["queue"])
        n = self.engine.replay_dead(name)
        return f"/queues/{u(name)}?" + urlencode({"state": "ready", "msg": f"retried {n} dead job(s)"})

    def bulk(self, request: Request, form: Form) -> str:
        name, ids, verb = _queue(request.path_params["queue"]), [str(i) for i in form["ids"]], form.get("action")
        state = str(form.get("state", "ready"))
        if not ids:
            raise Refused("select at least one job")
        if verb == "retry":
            n = self.engine.replay_dead(name, ids)
        elif verb == "cancel":
            n = sum(1 for i in ids if self.engine.cancel(name, i))
        else:
            raise Refused(f"unknown bulk action {verb!r}")
        return f"/queues/{u(name)}?" + urlencode({"state": state, "msg": f"{verb}: {n} of {len(ids)} job(s)"})

    def set_limits(self, request: Request, form: Form) -> str:
        """Store the queue's limits from the form (an empty field: no such limit), or clear them."""
        name = _queue(request.path_params["queue"])
        if form.get("action") == "clear":
            self.engine.set_limits(name)
            return f"/queues/{u(name)}?" + urlencode({"msg": f"{name}: limits cleared"})
        values: dict[str, Any] = {}
        for field, convert in (("rate", int), ("per", float), ("concurrency", int)):
            text = str(form.get(field, "")).strip()
            if text:
                try:
                    values[field] = convert(text)
                except ValueError:
                    raise Refused(f"{field} must be a {'whole ' if convert is int else ''}number, "
                                  f"got {text[:40]!r}") from None
        if "per" in values and "rate" not in values:
            raise Refused("per is the window of a rate: give a rate too")
        self.engine.set_limits(name, **values)
        return f"/queues/{u(name)}?" + urlencode({"msg": f"{name}: limits saved"})

    def job_action(self, request: Request, verb: str) -> str:
        name, job_id = _queue(request.path_params["queue"]), request.path_params["job_id"]
        base = f"/queues/{u(name)}/jobs/{u(job_id)}"
        if verb == "retry":
            ok = self.engine.replay_dead(name, [job_id]) == 1
            msg = "back in ready" if ok else "not dead: nothing to retry"
        elif verb == "cancel":
            ok = self.engine.cancel(name, job_id)
            msg = "cancelled" if ok else "already finished"
        else:
            if not self.engine.delete_job(name, job_id):
                raise NotFound(f"no job {job_id} in {name}")
            return f"/queues/{u(name)}?" + urlencode({"msg": f"deleted job {job_id}"})
        return base + "?" + urlencode({"msg": f"job {job_id}: {msg}"})

    def cue_action(self, request: Request, form: Form) -> str:
        name, cue, verb = _queue(request.path_params["queue"]), request.path_params["name"], request.path_params["verb"]
        methods = {"pause": "pause_cue", "resume": "resume_cue", "remove": "remove_cue", "run": "run_cue"}
        if verb not in methods:
            raise Refused(f"unknown cue action {verb!r}")
        result = getattr(self.engine, methods[verb])(name, cue)
        msg = f"cue {cue}: {verb}" + (f" (job {result})" if isinstance(result, str) else "")
        return "/cues?" + urlencode({"msg": msg})


def _audit(request: Request, role: str, outcome: str) -> None:
    """The audit line of a dashboard action: what, on what, by which role, from where."""
    client = request.client.host if request.client else "-"
    audit.info("dashboard %s %s by role=%s client=%s: %s", request.method, clean(request.url.path), role,
               clean(client), clean(outcome))


def _form_note(form: dict[str, Any]) -> str:
    """What of an action's form says what it acted on (a purged state, bulk ids)."""
    parts = [f"state={form['state']}"] if form.get("state") else []
    ids = form.get("ids") or []
    if ids:
        parts.append(f"ids={','.join(str(i) for i in ids[:20])}{',...' if len(ids) > 20 else ''}")
    verb = form.get("action") or form.get("verb")
    if verb:
        parts.append(f"action={verb}")
    return f" ({' '.join(parts)})" if parts else ""


def _csrf_ok(request: Request, form: Mapping[str, Any]) -> bool:
    """Whether a form carries the CSRF token of the request's ``rp_csrf`` cookie."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    return bool(cookie) and same(str(form.get("csrf", "")), cookie)


def _trouble(request: Request, exc: BaseException) -> Response:
    """An action that met Redis trouble: 503 (507 when Redis is full), no Redis address."""
    code = outage.kind(exc)
    message, headers = outage.public(code, str(exc), request.url.path)
    return PlainTextResponse(message, status_code=507 if code == "redis_full" else 503, headers=headers)


def _queue(name: str) -> str:
    if not QUEUE_NAME.fullmatch(name or ""):
        raise NotFound(f"invalid queue name {name!r}")
    return name


def _int(value: str | None, default: int) -> int:
    try:
        return max(0, int(value)) if value is not None else default
    except ValueError:
        return default


def _short(payload: Any, limit: int = 80) -> str:
    text = json.dumps(payload, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _job_link(ref: str) -> str:
    queue, _, job_id = str(ref).partition("/")
    if not job_id:
        return e(ref)
    return f'<a href="/queues/{u(queue)}/jobs/{u(job_id)}">{e(queue)}/{e(job_id)}</a>'


def _with(url: str, **params: str) -> str:
    base = url.split("?", 1)[0]
    return f"{base}?{urlencode(params)}"
