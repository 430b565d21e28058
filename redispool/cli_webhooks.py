"""``redispool deliver`` and ``redispool webhook add|rm|list|deliveries``.

Registered on the ``redispool`` group by cli.py. A secret is read from
``$REDISPOOL_WEBHOOK_SECRET`` unless ``--secret`` is given (a command line is visible
to every user of the host).
"""
from __future__ import annotations

import click

from .cli import ago, as_json, cli, json_option, obj, setup_logging, table, when
from .signing import SCHEMES
from .webhooks import DEFAULT_EVENTS, LOG_MAX, MAX_ATTEMPTS

SECRET_ENV = "REDISPOOL_WEBHOOK_SECRET"


@cli.command()
@click.option("--concurrency", type=click.IntRange(1, 1000), default=32, show_default=True,
              help="deliveries in progress at once")
@click.option("--timeout", type=click.FloatRange(0.1, 300), default=10.0, show_default=True,
              help="seconds a receiver has to answer")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--burst", is_flag=True, help="exit once no delivery is waiting or in progress")
@click.pass_context
def deliver(ctx: click.Context, /, concurrency: int, timeout: float, log_format: str, burst: bool) -> None:
    """POST webhook deliveries and webhook cues' fires, until SIGTERM (any number may run)."""
    from .deliver import Deliverer
    setup_logging(ctx.meta["log_level"], log_format)
    Deliverer(obj().engine(), concurrency=concurrency, timeout=timeout, log_format=log_format).run(burst=burst)


@cli.group()
def webhook() -> None:
    """Webhooks: queues' events POSTed to a URL by `redispool deliver`."""


@webhook.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--event", "events", multiple=True, default=DEFAULT_EVENTS, show_default=True,
              help="an event type to deliver (repeat for several)")
@click.option("--queue", "queues", multiple=True,
              help="deliver this queue's events only (repeat; default: every queue)")
@click.option("--secret", envvar=SECRET_ENV, help=f"sign requests with this secret (default ${SECRET_ENV})")
@click.option("--scheme", type=click.Choice(list(SCHEMES)), default="redispool", show_default=True,
              help="headers and body of the requests")
@click.option("--max-attempts", type=int, default=MAX_ATTEMPTS, show_default=True)
@click.option("--disabled", is_flag=True, help="keep it, but deliver nothing to it (add it again to enable it)")
@click.option("--disable-after", type=int, default=0, show_default=True,
              help="disable it after this many consecutive failed deliveries (0: never)")
def webhook_add(name: str, url: str, events: tuple[str, ...], queues: tuple[str, ...], secret: str | None,
                scheme: str, max_attempts: int, disabled: bool, disable_after: int) -> None:
    """Create or replace webhook NAME posting to URL."""
    info = obj().engine().add_webhook(name, url, events=events, queues=queues or None, secret=secret,
                                      scheme=scheme, max_attempts=max_attempts, enabled=not disabled,
                                      disable_after=disable_after)
    click.echo(f"webhook {info.name} posts {','.join(info.events)} of "
               f"{','.join(info.queues) if info.queues else 'every queue'} to {info.url}"
               f"{' (signed)' if info.signed else ''}{'' if info.enabled else ' (disabled)'}")


@webhook.command("rm")
@click.argument("name")
def webhook_rm(name: str) -> None:
    """Remove webhook NAME (deliveries still waiting are dropped)."""
    obj().engine().remove_webhook(name)
    click.echo(f"webhook {name} removed")


@webhook.command("list")
@json_option
def webhook_list(as_json_: bool) -> None:
    """Every webhook."""
    infos = obj().engine().webhooks()
    if as_json_:
        return as_json(infos)
    table(["name", "url", "events", "queues", "signed", "scheme", "max_attempts", "enabled", "failures",
           "created (UTC)"],
          [[w.name, w.url, ",".join(w.events), ",".join(w.queues) if w.queues else "*",
            "yes" if w.signed else "no", w.scheme, w.max_attempts,
            "yes" if w.enabled else "auto-disabled" if w.auto_disabled_at else "no", w.failures,
            when(w.created_at)] for w in infos])


@webhook.command("deliveries")
@click.argument("name")
@click.option("--limit", type=click.IntRange(1, LOG_MAX), default=20, show_default=True)
@json_option
def webhook_deliveries(name: str, limit: int, as_json_: bool) -> None:
    """The latest delivery attempts of webhook NAME, newest first."""
    rows = obj().engine().deliveries(name, limit=limit)
    if as_json_:
        return as_json(rows)
    table(["when", "event", "queue", "job", "attempt", "status", "code", "ms", "error"],
          [[ago(d.at), d.event, d.queue, d.job_id or "-", d.attempt, d.status, d.code or "-", d.duration_ms,
            d.error or ""] for d in rows])
