"""``redispool workflow list|show|cancel``: workflows (workflows.py) from the command line.

Registered on the ``redispool`` group by cli.py. An unknown workflow id is bad input (exit
2, one line, as an unknown job); ``--json`` prints the same shape as the HTTP API's
``GET /v1/workflows/{id}`` (``jobs``: each key's queue, id, state, parents and mode).
"""
from __future__ import annotations

import click

from .cli import as_json, cli, json_option, obj, table, when
from .models import Workflow


def counts(wf: Workflow) -> str:
    """Its nodes per state, e.g. ``done 3, waiting 1``."""
    tally: dict[str, int] = {}
    for state in wf.states.values():
        tally[state or "gone"] = tally.get(state or "gone", 0) + 1
    return ", ".join(f"{state} {n}" for state, n in sorted(tally.items()))


@cli.group()
def workflow() -> None:
    """Workflows: graphs of jobs created in one call (enqueue_workflow, POST /v1/workflows)."""


@workflow.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@json_option
def workflow_list(limit: int, as_json_: bool) -> None:
    """The latest workflows, newest first."""
    flows = obj().engine().workflows(limit=limit)
    if as_json_:
        return as_json([wf.to_dict() for wf in flows])
    table(["id", "name", "status", "nodes", "created (UTC)", "states"],
          [[wf.id, wf.name, wf.status, len(wf.jobs), when(wf.created_at), counts(wf)] for wf in flows])


@workflow.command("show")
@click.argument("workflow_id")
@json_option
def workflow_show(workflow_id: str, as_json_: bool) -> None:
    """Workflow WORKFLOW_ID: its status and each node's queue, job, state and parents."""
    wf = obj().engine().workflow(workflow_id)
    if as_json_:
        return as_json(wf.to_dict())
    cancelled = f", cancelled {when(wf.cancelled_at)}" if wf.cancelled_at is not None else ""
    click.echo(f"workflow {wf.id} {wf.name!r}: {wf.status}, {len(wf.jobs)} nodes, created {when(wf.created_at)}"
               f"{cancelled}")
    table(["key", "queue", "job", "state", "depends on"],
          [[key, queue, job_id, wf.states.get(key) or "gone",
            (",".join(wf.depends_on.get(key, [])) + (" (any)" if wf.dependency_mode.get(key) == "any" else ""))
            or "-"] for key, (queue, job_id) in wf.jobs.items()])


@workflow.command("cancel")
@click.argument("workflow_id")
@json_option
def workflow_cancel(workflow_id: str, as_json_: bool) -> None:
    """Cancel every unfinished node of workflow WORKFLOW_ID (its status is cancelled from then on)."""
    cancelled = obj().engine().cancel_workflow(workflow_id)
    if as_json_:
        return as_json({"id": workflow_id, "cancelled": cancelled})
    click.echo(f"workflow {workflow_id} cancelled: {cancelled} node(s) stopped")
