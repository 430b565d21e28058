"""The dashboard's live feed: ``GET /dashboard/events``, which a page follows to look
again the moment something it shows changes, instead of every few seconds.

``?queue=Q`` (several, up to a page of queues; none: every queue, new ones included),
``&job=ID`` (with one queue: only that job's events) and ``?last_event_id=`` or the
``Last-Event-ID`` header (what an EventSource sends when it reconnects). A page puts the
cursor of its own render in its feed's address (``feed_url``), so whatever changes
between the render and the stream's start is sent too. It needs the dashboard's session
cookie, like the pages (401 without one: an EventSource then stops asking).

The frames are those of ``GET /v1/events`` (web/sse.py: the same read loop, one blocked
XREAD on a connection of its own, ended at shutdown by the server's ``LoopEngines``)
without ``event:`` lines, so each reaches the EventSource's ``onmessage``; paced and
skipping ahead when behind (a ``behind`` frame), since a page needs to know when to
look, not every event of a busy queue. static/dashboard.js refreshes the page's live
parts on a frame (at most one refresh at a time, one a second), sends the newest event
it has heard of (``X-Live-Since``: the overview then takes no shared read made before
it), and keeps a slow fallback refresh (``create_dashboard(fallback_s=)``).
"""
from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from .. import blocking, validate
from ..engine import Engine
from ..errors import REDIS_TROUBLE, ConnectionFailed, InvalidOption, RedisFull, RedispoolError
from ..events import CLUSTER_SKEW_MS, MAX_SEQ, Cursor, now_cursor
from ..keys import check_queue
from ..web import outage, sse
from ..web.waiting import LoopEngines
from .figures import QUEUES_PER_PAGE

PATH = "/dashboard/events"
MAX_QUEUES = QUEUES_PER_PAGE   # what one page shows at most
PACE_S = 0.5                   # at most two reads a second while events keep coming
TROUBLE: tuple[type[BaseException], ...] = (ConnectionFailed, RedisFull, *REDIS_TROUBLE)


def feed_url(queues: Sequence[str], cursor: str, job: str | None = None) -> str:
    """The feed of a page that shows ``queues`` (none: every queue) as of ``cursor``."""
    params = [("queue", q) for q in queues] + ([("job", job)] if job is not None else [])
    return f"{PATH}?{urlencode([*params, ('last_event_id', cursor)])}"


def queue_cursor(engine: Engine, queue: str) -> str:
    """The cursor of a one-queue page, read before its figures: its log's last event."""
    last = engine.latest_events(queue, 1)
    return last[-1].id if last else "0-0"


def clock_cursor(engine: Engine, at_ms: int) -> str:
    """The cursor of a several-queue page whose figures were read just after Redis time
    ``at_ms`` (on a cluster, ``CLUSTER_SKEW_MS`` earlier: the logs' clocks differ)."""
    skew = CLUSTER_SKEW_MS if blocking.is_cluster(engine.client) else 0
    return f"{max(0, at_ms - 1 - skew)}-{MAX_SEQ}"


def since(request: Request) -> int:
    """``X-Live-Since``: the Redis ms of the newest event the page has heard of (0: none)."""
    try:
        return max(0, int(request.headers.get("x-live-since", "0")))
    except ValueError:
        return 0


def parse(request: Request) -> tuple[list[str], str | None, Cursor | None]:
    """The queues, job and cursor a feed request names (RedispoolError: it names them badly)."""
    queues = [check_queue(q) for q in request.query_params.getlist("queue")]
    job = request.query_params.get("job")
    if len(queues) > MAX_QUEUES:
        raise InvalidOption(f"at most {MAX_QUEUES} queues, got {len(queues)}")
    if job is not None:
        validate.identifier(job, "job")
        if len(queues) != 1:
            raise InvalidOption("job needs exactly one queue")
    token = sse.resume_token(request)
    return queues, job, Cursor.parse(token) if token else None


async def answer(waits: LoopEngines, request: Request, *, signed_in: bool) -> Response:
    """The feed the request asks for, or why not: 401 without a session (an EventSource
    then stops asking), 400 for bad parameters, 503 (507: Redis full) when Redis cannot
    say where the present is (the address goes to the log, not the page)."""
    if not signed_in:
        return PlainTextResponse("sign in first", status_code=401)
    try:
        queues, job, cursor = parse(request)
        if cursor is None:
            cursor = await now_cursor(waits.get())
    except TROUBLE as exc:
        code = outage.kind(exc)
        message, headers = outage.public(code, str(exc), request.url.path)
        return PlainTextResponse(message, status_code=507 if code == "redis_full" else 503, headers=headers)
    except RedispoolError as exc:
        return PlainTextResponse(str(exc), status_code=400)
    frames = sse.follow(waits, request, queues, cursor, job=job, named=False, pace_s=PACE_S, skip=True)
    return StreamingResponse(frames, media_type=sse.MEDIA_TYPE, headers=sse.HEADERS)
