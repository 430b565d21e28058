"""``redispool events [QUEUE] [--follow] [--json]``: a queue's event log (or every
queue's, merged in one order) on the terminal, and with ``--follow`` live as it grows.

Registered on the ``redispool`` group by cli.py. A follow waits in Redis (events.py's
``read_queues``: one blocked XREAD) and resumes from the last event printed, so nothing
is skipped or printed twice; Ctrl-C or SIGTERM ends it with exit 0.
"""
from __future__ import annotations

import asyncio
import contextlib
import signal
from datetime import datetime, timezone
from typing import Any

import click

from . import tojson
from .cli import cli, json_option, obj
from .events import Cursor, merge, now_cursor, read_queues
from .models import Event

FOLLOW_WAIT_S = 5.0


def line(event: Event, as_json: bool) -> str:
    """One event: a JSON object (``--json``), else time, queue, type, job and data."""
    if as_json:
        return tojson.dumps(event.to_dict())
    at = datetime.fromtimestamp(event.at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    data = " ".join(f"{k}={tojson.dumps(v) if isinstance(v, str) and (' ' in v or not v) else v}"
                    for k, v in event.data.items())
    return "  ".join(filter(None, [at, event.queue, f"{event.type:<9}", event.job_id or "-", data]))


@cli.command("events")
@click.argument("queue", required=False)
@click.option("--follow", "-f", is_flag=True, help="keep printing new events as they happen")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="how many of the newest events to print first")
@json_option
def events_command(queue: str | None, follow: bool, limit: int, as_json_: bool) -> None:
    """The newest events of QUEUE (every queue's, merged, without it), oldest first; with
    --follow, then every new one as it happens. --json prints one JSON object per line."""
    engine = obj().engine()
    queues = [queue] if queue else engine.queues()
    tail = merge({q: engine.latest_events(q, limit) for q in queues}, limit + 1)[-limit:]
    for event in tail:
        click.echo(line(event, as_json_))
    if not follow:
        return
    cursor = Cursor(tail[-1].id, "" if queue else tail[-1].queue) if tail else None
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_follow(engine, queue, cursor, as_json_))


async def _follow(engine: Any, queue: str | None, cursor: Cursor | None, as_json: bool) -> None:
    from .aio import AsyncEngine, async_client
    aio = AsyncEngine(engine)
    client = async_client(engine, max_connections=None)
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def stop() -> None:   # a cancellation a library swallows must not keep the loop going
        stopping.set()
        if task is not None:
            task.cancel()
    loop.add_signal_handler(signal.SIGTERM, stop)
    try:
        if cursor is None:
            cursor = await now_cursor(aio)
        while not stopping.is_set():
            queues = [queue] if queue else await aio.queues()
            for event in await read_queues(aio, client, queues, cursor, block=FOLLOW_WAIT_S if queue else 1.0):
                cursor = Cursor(event.id, "" if queue else event.queue)
                click.echo(line(event, as_json))
    except asyncio.CancelledError:
        pass
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        await client.aclose()
        await aio.close()
