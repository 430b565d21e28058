"""Workflows: a graph of jobs created all or nothing (``Engine.enqueue_workflow``).

Each node is a job with ``depends_on`` between nodes (``Dependencies`` does the running).
Creation is gated so that a half-created workflow never runs: the workflow's gate job
(queue ``_workflows``, id = the workflow id, never claimed by a worker) is created first,
every node without parents waits for it, and it is completed (``claim_id`` + ``complete``,
whose outbox hand-off releases those nodes) only after every node exists. A process that
dies during creation leaves the record, the open gate and some ``waiting`` nodes behind:
``cancel_workflow`` cleans them up (the gate's cancel cancels every node that waits on it),
and ``enqueue_workflow`` with the same ``workflow_id`` finishes the creation instead (every
node has a fixed job id ``<workflow id>.<n>``, so creating it again is a no-op).

Nodes are created in rounds: one ``enqueue_specs`` batch per queue holding every node
whose parents exist already or come earlier in that batch (enqueue.lua accepts those), so
a workflow of a few queues takes a few round trips whatever its size.

The record (``rp:workflow:{<id>}``, keys.py) lists the nodes and edges; the status is
computed from the nodes' states when read, so no write ever spans two slots.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import codec, ops, validate
from .base import EngineBase
from .errors import InvalidOption, JobNotFound, WorkflowNotFound
from .keys import check_queue, workflow_key, workflows_key
from .models import Workflow

if TYPE_CHECKING:
    from .models import Job, LeaseRef

GATE_QUEUE = "_workflows"    # the gate jobs' queue (served by no worker)
GATE_WORKER = "redispool-workflow"
NODES_MAX = 10_000           # nodes per workflow
NAME_MAX = 256
UNFINISHED = ("waiting", "scheduled", "ready", "leased")
NODE_OPTIONS = ("priority", "delay", "run_at", "max_attempts", "lease", "backoff_base", "backoff_cap", "timeout")
NODE_FIELDS = ("key", "queue", "payload", "depends_on", "dependency_mode", *NODE_OPTIONS)

Node = tuple[str, str, str, list[str], str]    # key, queue, job id, parent keys, mode


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _order(keys: Sequence[str], parents: Mapping[str, Sequence[str]]) -> list[str]:
    """``keys`` in an order where each comes after its parents (Kahn, stable by input
    order); InvalidOption naming the nodes of a cycle."""
    children: dict[str, list[str]] = {k: [] for k in keys}
    missing = {k: len(parents[k]) for k in keys}
    for k in keys:
        for p in parents[k]:
            children[p].append(k)
    ready = [k for k in keys if missing[k] == 0]
    out: list[str] = []
    while ready:
        k = ready.pop(0)
        out.append(k)
        for c in children[k]:
            missing[c] -= 1
            if missing[c] == 0:
                ready.append(c)
    if len(out) < len(keys):
        stuck = [k for k in keys if missing[k] > 0]
        raise InvalidOption(f"depends_on has a cycle among {', '.join(map(repr, stuck[:10]))}")
    return out


def status_of(states: Mapping[str, str | None], cancelled: bool) -> str:
    """running | completed | failed | cancelled from the nodes' states (None: gone,
    counted as finished)."""
    if cancelled:
        return "cancelled"
    values = list(states.values())
    if any(s in ("dead", "cancelled") for s in values):
        return "failed"
    if all(s in ("done", None) for s in values) and any(s == "done" for s in values):
        return "completed"
    return "running"


class WorkflowsMixin(EngineBase):
    """Workflow methods of ``Engine``."""

    if TYPE_CHECKING:   # Engine's own methods, which these build on
        def enqueue_specs(self, queue: str, specs: Sequence[ops.JobSpec]) -> list[tuple[str, bool]]: ...
        def claim_id(self, queue: str, job_id: str, worker_id: str, *, lease: float | None = None
                     ) -> Job | None: ...
        def complete(self, job: LeaseRef, result: Any = None) -> None: ...
        def cancel(self, queue: str, job_id: str) -> bool: ...

    def enqueue_workflow(self, name: str, jobs: Iterable[Mapping[str, Any]], *,
                         workflow_id: str | None = None) -> Workflow:
        """Create a workflow: ``jobs`` a list of ``{key, queue, payload, depends_on: [keys],
        dependency_mode, priority, delay, run_at, max_attempts, lease, backoff_base,
        backoff_cap, timeout}``. Everything is checked first (InvalidOption, a ValueError:
        a duplicate or unknown key, a cycle, a bad queue or option; nothing written). No
        node runs before every node exists. ``workflow_id`` (optional): the same id again
        finishes a creation that died half way (and refuses a different workflow)."""
        if not isinstance(name, str) or not 1 <= len(name) <= NAME_MAX:
            raise InvalidOption(f"a workflow name is 1-{NAME_MAX} characters, got {name!r}")
        if workflow_id is not None and isinstance(workflow_id, str) and len(workflow_id) > 200:
            raise InvalidOption("workflow_id takes at most 200 characters")
        wid = validate.job_id(workflow_id) if workflow_id is not None else "wf-" + secrets.token_hex(8)
        nodes, specs = self._plan_workflow(wid, list(jobs))
        digest = hashlib.sha256(json.dumps([name, nodes]).encode()
                                + b"".join(spec.payload for spec in specs.values())).hexdigest()
        record = workflow_key(self.prefix, wid)
        old = self.scripts.command("HGET", record, "digest")
        if old is not None and _text(old) != digest:
            raise InvalidOption(f"workflow {wid!r} exists with other jobs")
        seconds, micros = self.scripts.command("TIME")
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        if old is None:
            self.scripts.pipeline([
                ("HSET", record, "name", name, "created", now_ms, "digest", digest, "nodes", json.dumps(nodes)),
                ("ZADD", workflows_key(self.prefix), "NX", now_ms, wid)])
        self.enqueue_specs(GATE_QUEUE, [ops.job_spec({"workflow": wid, "name": name}, job_id=wid,
                                                   max_attempts=1_000_000)])   # an expired open never buries it
        self._create_nodes(nodes, specs)
        # open the gate: the first nodes go ready (a short lease: a process that dies right
        # here leaves the gate to the sweeper, ready again for a repeated creation to open)
        job = self.claim_id(GATE_QUEUE, wid, GATE_WORKER, lease=5.0)
        if job is not None:
            self.complete(job)
        if old is not None:   # a creation finished again: some nodes may have run
            return self.workflow(wid)
        # fresh: the states as created (saves reading 1,000 nodes back)
        states: dict[str, str | None] = {}
        for key, _, _, ps, _ in nodes:
            options = specs[key].options
            states[key] = "waiting" if ps else ("scheduled" if options.delay_ms > 0 or options.run_at_ms > 0
                                                 else "ready")
        return Workflow(id=wid, name=name, status="running", jobs={k: (q, j) for k, q, j, _, _ in nodes},
                        created_at=now_ms / 1000, states=states, depends_on={k: ps for k, _, _, ps, _ in nodes},
                        dependency_mode={k: m for k, _, _, _, m in nodes})

    def _plan_workflow(self, wid: str, jobs: list[Mapping[str, Any]]) -> tuple[list[Node], dict[str, ops.JobSpec]]:
        """Check every node; the nodes in creation order (parents first) and their specs."""
        if not jobs:
            raise InvalidOption("a workflow needs at least one job")
        if len(jobs) > NODES_MAX:
            raise InvalidOption(f"a workflow takes at most {NODES_MAX} jobs, got {len(jobs)}")
        index: dict[str, int] = {}
        parents: dict[str, list[str]] = {}
        for i, job in enumerate(jobs):
            if not isinstance(job, Mapping):
                raise InvalidOption(f"job {i} of the workflow is not a dict")
            unknown = sorted(str(f) for f in job if f not in NODE_FIELDS)
            if unknown:
                raise InvalidOption(f"job {i} of the workflow has unknown fields {', '.join(unknown)}")
            key = job.get("key")
            if not isinstance(key, str):
                raise InvalidOption(f"job {i} of the workflow needs a key (a string)")
            validate.identifier(key, "key")
            if key in index:
                raise InvalidOption(f"the key {key!r} is used twice in the workflow")
            index[key] = i
            deps = job.get("depends_on") or []
            if isinstance(deps, str) or not isinstance(deps, (list, tuple)) or \
                    not all(isinstance(d, str) for d in deps):
                raise InvalidOption(f"depends_on of {key!r} must be a list of keys, got {deps!r}")
            parents[key] = list(dict.fromkeys(deps))
        for key, ps in parents.items():
            for p in ps:
                if p not in index:
                    raise InvalidOption(f"{key!r} depends on the unknown key {p!r}")
                if p == key:
                    raise InvalidOption(f"depends_on has a cycle among {key!r}")
        order = _order(list(index), parents)
        nodes: list[Node] = []
        specs: dict[str, ops.JobSpec] = {}
        seen: dict[str, ops.JobOptions] = {}
        queue_of = {key: check_queue(jobs[i].get("queue")) for key, i in index.items()}
        for key in order:
            job = jobs[index[key]]
            mode = job.get("dependency_mode", "all")
            if mode not in ops.DEPENDENCY_MODES:
                raise InvalidOption(f"dependency_mode of {key!r} must be 'all' or 'any', got {mode!r}")
            job_id = f"{wid}.{index[key]}"
            depends = [(queue_of[p], f"{wid}.{index[p]}") for p in parents[key]] or [(GATE_QUEUE, wid)]
            options = {f: job[f] for f in NODE_OPTIONS if f in job}
            try:
                shared = repr(sorted(options.items()))   # most nodes share their options: check them once
                checked = seen.get(shared)
                if checked is None:
                    checked = seen[shared] = ops.job_options(**options)
                specs[key] = ops.JobSpec(codec.encode(job.get("payload"), check=True), checked._replace(job_id=job_id),
                                         ops.dependencies(queue_of[key], depends, mode if parents[key] else "all"))
            except InvalidOption as exc:
                raise InvalidOption(f"job {key!r} of the workflow: {exc}") from exc
            nodes.append((key, queue_of[key], job_id, parents[key], str(mode)))
        return nodes, specs

    def _create_nodes(self, nodes: Sequence[Node], specs: Mapping[str, ops.JobSpec]) -> None:
        """Create the nodes in rounds: per round one batch per queue of every node whose
        parents exist or come earlier in that batch."""
        created: set[str] = set()
        remaining = list(nodes)
        while remaining:
            batches: dict[str, list[Node]] = {}
            placed: dict[str, str] = {}
            rest: list[Node] = []
            for node in remaining:
                key, queue, _, ps, _ = node
                if all(p in created or placed.get(p) == queue for p in ps):
                    batches.setdefault(queue, []).append(node)
                    placed[key] = queue
                else:
                    rest.append(node)
            for queue, batch in batches.items():
                for at in range(0, len(batch), 1000):   # a script call creates at most BATCH_MAX jobs
                    self.enqueue_specs(queue, [specs[n[0]] for n in batch[at:at + 1000]])
            created.update(placed)
            remaining = rest

    def _record(self, workflow_id: str) -> tuple[dict[str, Any], list[Node]]:
        fields = self.scripts.command("HGETALL", workflow_key(self.prefix, workflow_id))
        if not fields:
            raise WorkflowNotFound(f"no workflow {workflow_id!r}")
        record = {_text(k): _text(v) for k, v in fields.items()}
        nodes = [(str(k), str(q), str(j), [str(p) for p in ps], str(m))
                 for k, q, j, ps, m in json.loads(record["nodes"])]
        return record, nodes

    def _states(self, nodes: Sequence[Node]) -> dict[str, str | None]:
        replies: list[Any] = []
        for at in range(0, len(nodes), 1000):
            replies += self.scripts.pipeline([("HGET", self.keys(q).job(j), "s")
                                              for _, q, j, _, _ in nodes[at:at + 1000]])
        return {n[0]: (_text(s) if s is not None else None) for n, s in zip(nodes, replies)}

    def workflow(self, workflow_id: str) -> Workflow:
        """The workflow ``workflow_id`` with its status and its nodes' states (one
        pipelined read per 1,000 nodes); WorkflowNotFound if there is none."""
        record, nodes = self._record(workflow_id)
        states = self._states(nodes)
        cancelled = record.get("cancelled")
        return Workflow(
            id=workflow_id, name=record.get("name", ""), status=status_of(states, cancelled is not None),
            jobs={k: (q, j) for k, q, j, _, _ in nodes}, created_at=int(record.get("created", 0)) / 1000,
            states=states, depends_on={k: ps for k, _, _, ps, _ in nodes},
            dependency_mode={k: m for k, _, _, _, m in nodes},
            cancelled_at=int(cancelled) / 1000 if cancelled is not None else None)

    def workflows(self, limit: int = 20) -> list[Workflow]:
        """The latest ``limit`` workflows, newest first (each read as by ``workflow``)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise InvalidOption(f"limit must be an integer in [1, 1000], got {limit!r}")
        ids = self.scripts.command("ZREVRANGE", workflows_key(self.prefix), 0, limit - 1)
        out = []
        for wid in ids:
            try:
                out.append(self.workflow(_text(wid)))
            except WorkflowNotFound:
                continue
        return out

    def workflow_of(self, queue: str, job_id: str) -> str | None:
        """The id of the workflow job ``job_id`` of ``queue`` is a node of, or None."""
        wid, dot, n = job_id.rpartition(".")
        if not dot or not n.isdigit():
            return None
        raw = self.scripts.command("HGET", workflow_key(self.prefix, wid), "nodes")
        if raw is None:
            return None
        try:
            node = json.loads(_text(raw))[int(n)] if int(n) < NODES_MAX else None
        except (ValueError, IndexError):
            return None
        return wid if node is not None and node[1] == queue and node[2] == job_id else None

    def cancel_workflow(self, workflow_id: str) -> int:
        """Cancel every unfinished node of the workflow (and its gate, so a creation that
        died half way never runs); returns how many nodes were cancelled. Its status is
        ``cancelled`` from then on. WorkflowNotFound if there is none."""
        record, nodes = self._record(workflow_id)
        if record.get("cancelled") is None:
            seconds, micros = self.scripts.command("TIME")
            self.scripts.command("HSET", workflow_key(self.prefix, workflow_id), "cancelled",
                                 int(seconds) * 1000 + int(micros) // 1000)
        before = self._states(nodes)
        with contextlib.suppress(JobNotFound):
            self.cancel(GATE_QUEUE, workflow_id)
        for _ in range(2):   # the running ones, then any waiting node not reached through its parents
            states = self._states(nodes)
            waiting_ok = _ > 0
            for key, queue, job_id, _ps, _m in nodes:
                state = states[key]
                if state in UNFINISHED and (state != "waiting" or waiting_ok):
                    with contextlib.suppress(JobNotFound):
                        self.cancel(queue, job_id)
        after = self._states(nodes)
        return sum(1 for k in before if before[k] in UNFINISHED and after[k] == "cancelled")
