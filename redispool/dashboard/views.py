"""HTML of the dashboard pages. Every value that comes from Redis (payloads, errors,
results, queue, cue, worker and webhook names, URLs, receivers' answers) goes through
``e()``: it is shown, never run."""
from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from html import escape
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from ..tojson import jsonable

STATES = ("waiting", "ready", "scheduled", "leased", "done", "dead", "cancelled")
NAV = (("/", "Overview"), ("/workers", "Workers"), ("/cues", "Cues"), ("/webhooks", "Webhooks"),
       ("/enqueue", "Enqueue"))


def e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def u(value: Any) -> str:
    """A path segment."""
    return quote(str(value), safe="")


def when(ts: float | None, tz: str | None = None) -> str:
    if not ts:
        return "-"
    zone = ZoneInfo(tz) if tz else timezone.utc
    return datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def age(ts: float | None, now: float | None = None) -> str:
    if not ts:
        return "-"
    delta = (now or time.time()) - ts
    if delta < 0:
        return f"in {_span(-delta)}"
    return f"{_span(delta)} ago"


def _span(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def kept(value: Any, dropped: int | None) -> str:
    """A payload or result, or what the queue's retention left of it (set_retention)."""
    return pretty(value) if dropped is None else f"<dropped by the queue's retention: {dropped} bytes>"


def progress_bar(progress: dict[str, Any]) -> str:
    """A job's last progress report (``JobInfo.progress``): a bar, the value, its message
    and when it came."""
    value = progress["value"]
    message = f" {e(progress['message'])}" if progress.get("message") else ""
    return (f'<progress max="100" value="{e(value)}"></progress> {e(f"{value:g}")}%{message}'
            f' <span class="muted">at {e(when(progress["at"]))}</span>')


def pretty(value: Any) -> str:
    """A payload or result as the API and the CLI write it (bytes, NaN tagged)."""
    return json.dumps(jsonable(value), indent=2, ensure_ascii=False)


class Page:
    """What every page needs: the user's role, the CSRF token, a flash message, and how
    its live parts are kept up to date (static/dashboard.js)."""

    def __init__(self, role: str, csrf: str, refresh_s: float, flash: str = "", error: bool = False,
                 signed_in: bool = False, fallback_s: float = 30.0) -> None:
        self.role, self.csrf, self.refresh_s, self.fallback_s = role, csrf, refresh_s, fallback_s
        self.flash, self.error, self.signed_in = flash, error, signed_in

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    def form(self, action: str, body: str, *, confirm: str | None = None, cls: str = "inline") -> str:
        """A POST form with the CSRF token (only admins see action forms)."""
        if not self.admin:
            return ""
        data = f' data-confirm="{e(confirm)}"' if confirm else ""
        return (f'<form method="post" action="{e(action)}" class="{cls}"{data}>'
                f'<input type="hidden" name="csrf" value="{e(self.csrf)}">{body}</form>')

    def button(self, action: str, label: str, *, danger: bool = False, confirm: str | None = None) -> str:
        cls = ' class="danger"' if danger else ""
        return self.form(action, f"<button{cls}>{e(label)}</button>", confirm=confirm)

    def layout(self, title: str, body: str, active: str = "", feed: str | None = None) -> str:
        """The page around ``body``. With ``feed`` (the address of its live feed) the live
        parts refresh on its events and every ``fallback_s``; without, every ``refresh_s``."""
        nav = "".join(f'<a href="{href}" class="{"on" if href == active else ""}">{label}</a>'
                      for href, label in NAV if href != "/enqueue" or self.admin)
        who = f'role: {e(self.role)}'
        if self.signed_in:
            who += (f' · <form method="post" action="/logout"><input type="hidden" name="csrf" '
                    f'value="{e(self.csrf)}"><button>Sign out</button></form>')
        live = f' data-events="{e(feed)}" data-fallback="{self.fallback_s:g}"' if feed else ""
        flash = ""
        if self.flash:
            flash = f'<div class="flash{" error" if self.error else ""}" role="status">{e(self.flash)}</div>'
        return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">'
                f'<title>{e(title)} · redispool</title><link rel="stylesheet" href="/static/dashboard.css">'
                f'</head><body data-refresh="{self.refresh_s:g}"{live}><header><span class="brand">redispool</span>'
                f'{nav}<span class="who">{who}</span></header><main>{flash}{body}</main>'
                f'<script src="/static/dashboard.js"></script></body></html>')


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, numeric: Sequence[int] = (),
          empty: str = "nothing here") -> str:
    """Rows are HTML already (escape cells with e())."""
    head = "".join(f'<th class="{"num" if i in numeric else ""}">{h}</th>' for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td class="{"num" if i in numeric else ""}">{c}</td>'
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    if not body:
        body = f'<tr><td colspan="{len(headers)}" class="muted">{e(empty)}</td></tr>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def chart(history: Sequence[tuple[float, int, int]], width: int = 900, height: int = 140) -> str:
    """Done (green, up) and failed (red, down from the middle) per minute, inline SVG."""
    n = max(1, len(history))
    top = max([d for _, d, _ in history] + [f for _, _, f in history] + [1])
    bar = width / n
    mid = height * 0.62
    parts = [f'<svg role="img" aria-label="jobs done and failed per minute, last {n} minutes" '
             f'width="{width}" height="{height + 16}" viewBox="0 0 {width} {height + 16}">',
             f'<line x1="0" y1="{mid:.1f}" x2="{width}" y2="{mid:.1f}" stroke="#c9ced6"/>']
    for i, (ts, done, failed) in enumerate(history):
        x = i * bar + 1
        label = f"{datetime.fromtimestamp(ts, timezone.utc):%H:%M} UTC: {done} done, {failed} failed"
        if done:
            h = (mid - 4) * done / top
            parts.append(f'<rect x="{x:.1f}" y="{mid - h:.1f}" width="{bar - 2:.1f}" height="{h:.1f}" '
                         f'fill="#2e9d5b"><title>{e(label)}</title></rect>')
        if failed:
            h = (height - mid - 4) * failed / top
            parts.append(f'<rect x="{x:.1f}" y="{mid:.1f}" width="{bar - 2:.1f}" height="{h:.1f}" '
                         f'fill="#d0453a"><title>{e(label)}</title></rect>')
    if history:
        first = datetime.fromtimestamp(history[0][0], timezone.utc)
        parts.append(f'<text x="0" y="{height + 13}" font-size="11" fill="#6b7380">{first:%H:%M} UTC</text>')
        parts.append(f'<text x="{width}" y="{height + 13}" font-size="11" fill="#6b7380" text-anchor="end">now</text>')
    parts.append(f'<text x="4" y="12" font-size="11" fill="#6b7380">max {top}/min</text></svg>')
    return "".join(parts)


def pager(base: str, params: dict[str, Any], page: int, more: bool,
          labels: tuple[str, str] = ("← newer", "older →"), pages: int | None = None) -> str:
    links = []
    if page > 0:
        links.append(f'<a class="button" href="{e(base)}?{e(urlencode({**params, "page": page - 1}))}">{labels[0]}</a>')
    links.append(f'<span class="muted">page {page + 1}{f" of {pages:,}" if pages else ""}</span>')
    if more:
        links.append(f'<a class="button" href="{e(base)}?{e(urlencode({**params, "page": page + 1}))}">{labels[1]}</a>')
    return f'<div class="actions">{"".join(links)}</div>'


def limits_form(p: Page, q: str, limits: Mapping[str, Any]) -> str:
    """The queue's limits in words, and for admins the form that sets or clears them."""
    rate, per, cap = limits["rate"], limits["per"], limits["concurrency"]
    said = " · ".join(filter(None, (f"at most {rate:,} claims per {per:g}s" if rate is not None else "",
                                    f"at most {cap:,} leased at once" if cap is not None else ""))) or "none"
    if not p.admin:
        return f'<p class="muted">limits: {e(said)}</p>'

    def box(field: str, label: str, value: Any) -> str:
        shown = "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
        return (f'<label for="limit-{field}">{label}</label> <input type="text" id="limit-{field}" '
                f'name="{field}" value="{e(shown)}" size="6">')
    fields = box("rate", "claims", rate) + " " + box("per", "per (s)", per) + " · " + box("concurrency", "at once", cap)
    clear = '<button name="action" value="clear">Clear limits</button>' if said != "none" else ""
    return (f'<div class="limits"><span class="muted">limits: {e(said)}</span> '
            + p.form(f"{q}/limits", f'{fields} <button name="action" value="save">Save limits</button>{clear}')
            + "</div>")
