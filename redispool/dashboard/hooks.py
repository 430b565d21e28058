"""The dashboard's webhooks pages: every webhook with its last delivery, a webhook with its
latest delivery attempts, and the admin's remove action.

A mixin of the dashboard (app.py), kept apart so app.py stays small. What a receiver
answered is shown as text: escaped, its control characters written out (``\\x1b``), and
cut to ``RESPONSE_SHOWN`` characters in the tables. A webhook's URL is shown, never
made a link (a click would send the reader's browser to it), and its secret never
leaves Redis (``WebhookInfo`` has none).
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from ..engine import Engine
from ..errors import WebhookNotFound
from ..keys import DELIVERY_QUEUE
from ..models import DeliveryInfo, WebhookInfo
from ..webhooks import URL_MAX
from . import figures
from .views import Page, age, e, table, u, when

DELIVERIES_SHOWN = 50     # attempts on a webhook's page (the log keeps up to webhooks.LOG_MAX)
RESPONSE_SHOWN = 200      # characters of an answer in a table cell


def shown(text: str | None, limit: int = RESPONSE_SHOWN) -> str:
    """A receiver's text as a page shows it: control characters written out, at most
    ``limit`` characters (then "…"); escape the result with ``e()``."""
    out = "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii")
                  for c in (text or ""))
    return out if len(out) <= limit else out[:limit - 1] + "…"


def status(d: DeliveryInfo | None, *, ago: bool = True) -> str:
    """A delivery's outcome as a badge (with its HTTP status) and, with ``ago``, how long
    ago it was; "never" for none."""
    if d is None:
        return '<span class="muted">never</span>'
    code = f" {e(d.code)}" if d.code is not None else ""
    badge = f'<span class="badge {e(d.status)}">{e(d.status)}{code}</span>'
    return badge + (f' <span class="muted">{e(age(d.at))}</span>' if ago else "")


def _url(w: WebhookInfo) -> str:
    return f"<code>{e(shown(w.url, URL_MAX))}</code>"


def _queues(w: WebhookInfo) -> str:
    return e(", ".join(w.queues)) if w.queues is not None else '<span class="muted">every queue</span>'


class WebhookPages:
    """``/webhooks``, ``/webhooks/{name}`` and ``POST /webhooks/{name}/remove``."""

    engine: Engine
    shared: figures.Shared

    def _listing(self) -> list[tuple[WebhookInfo, DeliveryInfo | None]]:
        """Every webhook with its latest delivery attempt (one removed meanwhile is left out)."""
        out = []
        for w in self.engine.webhooks():
            try:
                last = self.engine.deliveries(w.name, limit=1)
            except WebhookNotFound:
                continue
            out.append((w, last[0] if last else None))
        return out

    def webhooks(self, request: Request, p: Page) -> str:
        rows = []
        for w, last in self.shared.get(("webhooks",), self._listing):
            base = f"/webhooks/{u(w.name)}"
            rows.append([f'<a href="{base}">{e(w.name)}</a>', _url(w), e(", ".join(w.events)), _queues(w),
                         "yes" if w.signed else "no", e(w.scheme), e(w.max_attempts), status(last),
                         p.button(f"{base}/remove", "Remove", danger=True, confirm=f"Remove webhook {w.name}?")])
        body = ('<h1>Webhooks</h1><p class="muted">Events POSTed to a URL by <code>redispool deliver</code>; '
                'add and change them with <code>redispool webhook add</code> or <code>PUT /v1/webhooks/NAME</code>.'
                '</p><div id="webhooks-live" data-live>'
                + table(["name", "url", "events", "queues", "signed", "scheme", "max attempts", "last delivery", ""],
                        rows, empty="no webhooks") + "</div>")
        return p.layout("Webhooks", body, "/webhooks")

    def webhook(self, request: Request, p: Page) -> str | Response:
        name = request.path_params["name"]
        w = self.engine.get_webhook(name)
        if w is None:
            body = f'<h1>No webhook {e(name)}</h1><p>It never existed, or it was removed.</p>'
            return HTMLResponse(p.layout("Webhook not found", body, "/webhooks"), status_code=404)
        try:
            attempts = self.engine.deliveries(name, limit=DELIVERIES_SHOWN)
        except WebhookNotFound:   # removed since the line above
            attempts = []
        base = f"/webhooks/{u(name)}"
        fields = [("url", _url(w)), ("events", e(", ".join(w.events))), ("queues", _queues(w)),
                  ("signed", "yes" if w.signed else "no"), ("scheme", e(w.scheme)),
                  ("max attempts", e(w.max_attempts)), ("created", e(when(w.created_at)))]
        kv = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in fields)
        rows = [[f'<span style="white-space:nowrap">{e(when(d.at))}</span>', e(d.event),
                 f'<a href="/queues/{u(d.queue)}">{e(d.queue)}</a>', _job(d.queue, d.job_id),
                 _job(DELIVERY_QUEUE, d.id, "delivery job"), e(d.attempt), status(d, ago=False),
                 e(f"{d.duration_ms:g}"), e(shown(d.error)), f"<code>{e(shown(d.response))}</code>"] for d in attempts]
        body = (f'<h1>Webhook {e(name)}</h1><div class="actions">'
                + p.button(f"{base}/remove", "Remove", danger=True, confirm=f"Remove webhook {name}?")
                + f'</div><dl class="kv">{kv}</dl><h2>Latest deliveries (newest first, at most {DELIVERIES_SHOWN})</h2>'
                '<div id="webhook-live" data-live>'
                + table(["at", "event", "queue", "job", "delivery", "attempt", "status", "ms", "error", "response"],
                        rows, numeric=(5, 7), empty="no delivery yet") + "</div>")
        return p.layout(f"Webhook {name}", body, "/webhooks")

    def webhook_remove(self, request: Request, form: dict[str, Any]) -> str:
        name = request.path_params["name"]
        self.engine.remove_webhook(name)
        return "/webhooks?" + urlencode({"msg": f"webhook {name} removed"})


def _job(queue: str, job_id: str | None, label: str | None = None) -> str:
    if not job_id:
        return '<span class="muted">-</span>'
    return f'<a href="/queues/{u(queue)}/jobs/{u(job_id)}" style="white-space:nowrap">{e(label or job_id)}</a>'
