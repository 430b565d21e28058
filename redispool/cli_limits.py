"""``redispool limits QUEUE [--rate N] [--per S] [--concurrency N] [--clear] [--json]``: show
or store a queue's flow-control limits (limits.py), which every worker obeys.

Registered on the ``redispool`` group by cli.py. Like ``redispool retention``, options
change just the limits given (the others stay as stored); ``--clear`` drops them all
first (``--clear --concurrency 4`` keeps just the cap). Bad values exit 2 and change
nothing.
"""
from __future__ import annotations

from typing import Any

import click

from .cli import as_json, cli, fail, json_option, obj, table
from .keys import check_queue


@cli.command("limits")
@click.argument("queue")
@click.option("--rate", type=int, help="at most this many claims in any window of --per seconds")
@click.option("--per", type=float, help="the rate's window in seconds (default 1, or the stored one)")
@click.option("--concurrency", type=int, help="at most this many jobs leased at once, across every worker")
@click.option("--clear", is_flag=True, help="remove both limits first (then set the ones given)")
@json_option
def limits_command(queue: str, rate: int | None, per: float | None, concurrency: int | None, clear: bool,
                   as_json_: bool) -> None:
    """Show QUEUE's limits, or set them: claims per window (--rate, --per) and jobs leased
    at once (--concurrency), enforced in Redis for every worker."""
    check_queue(queue)
    engine = obj().engine()
    changing = clear or any(v is not None for v in (rate, per, concurrency))
    current: dict[str, Any] = engine.limits(queue)
    if changing:
        new: dict[str, Any] = {"rate": None, "per": None, "concurrency": None} if clear else dict(current)
        if rate is not None:
            new["rate"] = rate
        if per is not None:
            if new["rate"] is None:
                fail("--per is the window of a rate: give --rate too (no rate is stored)")
            new["per"] = per
        if concurrency is not None:
            new["concurrency"] = concurrency
        current = engine.set_limits(queue, rate=new["rate"], per=1.0 if new["per"] is None else new["per"],
                                    concurrency=new["concurrency"])
    if as_json_:
        return as_json(current)
    table(["limit", "value"], [
        ["rate", f"{current['rate']} per {current['per']:g}s" if current["rate"] is not None else "none"],
        ["concurrency", str(current["concurrency"]) if current["concurrency"] is not None else "none"]])
