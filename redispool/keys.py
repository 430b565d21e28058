"""The only place Redis key names are built.

Layout (prefix ``rp``, queue ``q``); every key of one queue carries the hash tag ``{q}`` so
each Lua script touches a single Redis Cluster slot:

    rp:{q}:waiting     zset  job ids waiting for their parents (depends_on), by enqueue time
    rp:{q}:ready       zset  job ids; score = -priority * 2**42 + seq (higher priority first, FIFO)
    rp:{q}:scheduled   zset  job ids by run time (ms)
    rp:{q}:leased      zset  job ids by lease expiry (ms)
    rp:{q}:done        zset  job ids by finish time (ms), trimmed by age and count
    rp:{q}:dead        zset  job ids by finish time (ms), trimmed by age and count
    rp:{q}:cancelled   zset  job ids by cancel time (ms), trimmed like done
    rp:{q}:marker      zset  one member while jobs are ready; blocked claimers BZPOPMIN it
    rp:{q}:stop:<worker id>  zset  set by a stopping worker to end its own wait, which pops
                             it with the marker (off Cluster); unused, it expires in 60 s
    rp:{q}:meta        hash  seq (id/order/token counter), paused (with paused_at ms and
                             paused_reason while it lasts), scheduler_at and
                             sweeper_at (ms: when each daemon next has work in the queue,
                             as in rp:due:<daemon>; see queues.py)
    rp:{q}:unique      hash  unique_key -> job id, while that job is unfinished
    rp:{q}:config      hash  the queue's settings, read by the scripts: retention
                             (retention.py) and limits (limits.py: rate, per_ms, concurrency);
                             and the defaults of jobs enqueued without their own
                             (queue_config.py: max_attempts, timeout_ms; applied by the
                             callers that take them, not by a script)
    rp:{q}:expiring    zset  ids of jobs enqueued with an expiry, by it (ms): the sweeper
                             cancels those not leased by then (an entry of a job leased
                             or finished meanwhile is just dropped then)
    rp:{q}:ratelog     list  the rate limit's sliding log: the server time (ms) of each
                             claim in the last per_ms, newest first, at most `rate` of them
                             (each claim drops what left the window; deleted with the rate)
    rp:{q}:counts      hash  lifetime totals: enqueued, completed, failed, retried, dead
    rp:{q}:minutes     hash  "<minute>:d" / "<minute>:f": jobs done / attempts failed per
                             minute (unix ms // 60000), ~3 hours
    rp:{q}:events      stream the queue's event log (events.py): one entry per state
                             change, written by the script that makes it, capped near
                             the engine's events_max (XADD MAXLEN ~)
    rp:{q}:job:<id>    hash  one job (fields below)
    rp:{q}:children:<id> set  the children waiting for job <id>, "<child queue>\n<child id>";
                             settled (released / cancelled, then deleted) by the script
                             that finishes <id>: complete, fail, ack, sweep, cancel
    rp:{q}:outbox      zset  "<child queue>\n<child id>\n<parent id>\n<outcome>" by time (ms):
                             outcomes of this queue's jobs for children in other queues
                             (other slots); Engine._drain_outbox applies each in the
                             child's slot (resolve.lua, once per child and parent) and
                             removes it; the finishing engine drains at once, the scheduler
                             (due at once: the entry plans scheduler_at) and the sweeper
                             after a crash
    rp:{q}:linking     zset  waiting jobs with parents in other queues, by creation time
                             (ms): enqueue adds them, the creator links them at once (link
                             in each parent's slot), and the scheduler links each again once
                             LINK_GRACE_S old (link is idempotent), then removes it, so a
                             creator that died before linking leaves no child waiting forever
    rp:{q}:cues        hash  cue name -> cue definition (JSON)
    rp:{q}:cue_next    zset  cue names by next fire time (ms)
    rp:{q}:cue_runs:<name> list  the cue's latest runs (fires and run_cue), newest first,
                             "<ms>:<job id>", at most CUE_RUNS_MAX (100); deleted with the cue
    rp:{q}:cueapi      hash  cue id -> cueapi record (JSON): the cueapi compat layer's
                             names, one-time schedules and retry settings of its cues
    rp:{q}:cueapi_secret string  the cueapi layer's webhook signing secret
    rp:{q}:cueapi_fire:<cue id>:<sha256 of key>  string  a fire's answer under its
                             idempotency key (JSON), for 24 h
    rp:queues          set   every queue in use (global, no hash tag; registered again by
                             the first enqueue after Redis lost its data, removed by
                             remove_queue)
    rp:due:scheduler   zset  queue -> ms when the scheduler next has work there (earliest
                             scheduled job or cue fire); global, plain commands only
    rp:due:sweeper     zset  queue -> ms when the sweeper next has work there (earliest
                             lease expiry or retention trim); global, plain commands only
    rp:webhooks        hash  webhook name -> definition (JSON: url, events, queues, secret,
                             scheme, max_attempts, since ms); global, plain commands only
    rp:spooled:<kind>  hash  the spooled compat layer's own fields of its schedules (cues),
                             workflows and outgoing webhooks: id -> JSON (name, description,
                             tags, metadata, ...); kind = schedules | workflows | webhooks
    rp:webhook:<name>:log list its latest delivery attempts (JSON, newest first, capped)
    rp:webhook:<name>:failures string  its consecutive failed deliveries (a delivery that
                             ended dead counts one, a successful one resets it to 0)
    rp:spooled:inbound stream the spooled compat layer's inbound webhook log (POST
                             /webhooks/{org}/custom): one entry per job it took, fields q
                             queue, j job id, s created/duplicate, e event type; capped near
                             1,000 (XADD MAXLEN ~); global, plain commands only
    rp:{q}:events (consumer group "deliver")  where the deliverers are in each queue's log;
                             deliveries and webhook cues' fires are jobs of the queue
                             ``_webhooks`` (a webhook cue of queue q is the cue ``q/<name>``
                             there, so its fire and its job share a slot)
    rp:workflow:{<id>} hash  one workflow (workflows.py): name, created (ms), nodes (JSON:
                             [key, queue, job id, [parent keys], mode] per node), digest (of
                             what was asked, so a repeated creation with the same id goes on
                             and a different one is refused), cancelled (ms); its own slot:
                             the status is computed from the nodes' states when read
    rp:workflows       zset  workflow ids by creation time (ms); global, plain commands only
    rp:{_workflows}:...      the queue ``_workflows`` holds each workflow's gate job (id =
                             the workflow id): its first nodes wait for it, and it is
                             completed after every node exists (all or nothing)
    rp:{#workers}:index      zset  worker ids by last heartbeat (ms)
    rp:{#workers}:w:<id>     hash  one worker's registration and counters

A Lua header names each of its KEYS by the pattern above, and scripts.py binds it by name
from the objects below: ``rp:{q}:ready`` is ``QueueKeys.ready`` (``rp:{q}:job:`` is
``job_prefix``), ``rp:{q}:<state>`` is ``StateKeys.state``, ``rp:{#workers}:index`` /
``w:<id>`` / ``w:`` are ``RegistryKeys.index`` / ``worker`` / ``worker_prefix`` and
``rp:due:<daemon>`` is ``DueKeys.due``.

Job hash fields (one letter to keep a queued job small): p payload (msgpack), s state,
a attempts, m max_attempts, r priority (absent = 0), c created ms, u updated ms,
ex expiry ms (absent = none: not leased by then, it is cancelled), tg tags (JSON),
l lease ms (absent = worker's), bb/bc backoff base/cap ms, to timeout ms (the longest one
attempt may run; absent = the worker's), k unique key, t lease token, w worker id,
x lease expiry ms, res result (msgpack), e errors (JSON, latest first), pg the current
(or last) attempt's progress (JSON {"v": value, "m": message, "at": ms}; progress.lua
writes it, the next lease clears it), pd / rd size in bytes of the payload / result a
done job no longer holds (its queue's retention dropped it). A job enqueued with depends_on: dm mode (all / any), dt
number of parents, dd / df parents done / failed so far, dx parents of other queues applied
("\n"-separated queue/id), dep the parents (JSON [[queue, id], ...]), wd / wa its delay ms
/ run time ms (applied when it is released).
"""
from __future__ import annotations

import re
from functools import lru_cache

from .errors import InvalidOption, InvalidQueueName

QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
STATES = ("waiting", "scheduled", "ready", "leased", "done", "dead", "cancelled")


_CHECKED: set[str] = set()   # names check_queue passed (a producer names the same few again and again)
_CHECKED_MAX = 4096


def check_queue(queue: object) -> str:
    """Return ``queue`` if it is a valid queue name, else raise InvalidQueueName."""
    if type(queue) is str and queue in _CHECKED:
        return queue
    if not isinstance(queue, str) or not QUEUE_NAME.fullmatch(queue):
        raise InvalidQueueName(f"invalid queue name {queue!r}: use 1-128 characters of A-Za-z0-9_.:-")
    if type(queue) is str:
        if len(_CHECKED) >= _CHECKED_MAX:
            _CHECKED.clear()
        _CHECKED.add(queue)
    return queue


class QueueKeys:
    """Key names of one queue."""

    __slots__ = ("prefix", "queue", "base", "job_prefix", "ready", "scheduled", "leased", "done", "dead",
                 "cancelled", "marker", "meta", "unique", "counts", "minutes", "config", "cues", "cue_next",
                 "cueapi", "events", "waiting", "children_prefix", "cue_runs_prefix", "outbox", "linking",
                 "ratelog", "expiring", "bound")

    prefix: str
    queue: str
    base: str
    job_prefix: str
    ready: str
    scheduled: str
    leased: str
    done: str
    dead: str
    cancelled: str
    marker: str
    meta: str
    unique: str
    counts: str
    minutes: str
    config: str
    cues: str
    cue_next: str
    cueapi: str
    events: str
    waiting: str
    children_prefix: str
    cue_runs_prefix: str
    outbox: str
    linking: str
    ratelog: str
    expiring: str
    bound: dict[str, list[str]]   # script name -> its KEYS (scripts.py fills it)

    def __init__(self, prefix: str, queue: str) -> None:
        self.bound = {}
        self.prefix = prefix
        self.queue = check_queue(queue)
        self.base = f"{prefix}:{{{queue}}}:"
        self.job_prefix = self.base + "job:"
        for name in STATES + ("marker", "meta", "unique", "counts", "minutes", "config", "cues", "cue_next",
                              "cueapi", "events", "outbox", "linking", "ratelog", "expiring"):
            setattr(self, name, self.base + name)
        self.children_prefix = self.base + "children:"
        self.cue_runs_prefix = self.base + "cue_runs:"

    def state(self, state: str) -> str:
        """The sorted set holding jobs in ``state``."""
        if state not in STATES:
            raise InvalidOption(f"unknown state {state!r}: one of {', '.join(STATES)}")
        return str(getattr(self, state))

    def stop(self, worker_id: str) -> str:
        """The key a stopping worker sets to end its own blocking wait on this queue's
        marker (off Cluster): one member, popped by that wait, in the marker's slot."""
        return f"{self.base}stop:{worker_id}"

    def job(self, job_id: str) -> str:
        return self.job_prefix + job_id


class StateKeys:
    """A queue's keys with ``state``: the set of one state (jobs.lua, purge.lua)."""

    __slots__ = ("keys", "state")

    def __init__(self, keys: QueueKeys, state: str) -> None:
        self.keys = keys
        self.state = keys.state(state)

    def __getattr__(self, name: str) -> str:
        return str(getattr(self.keys, name))


class RegistryKeys:
    """The worker registry's keys: the index, one worker's hash and the hashes' prefix."""

    __slots__ = ("index", "worker", "worker_prefix")

    def __init__(self, prefix: str, worker_id: str = "") -> None:
        self.index = workers_index_key(prefix)
        self.worker_prefix = worker_key(prefix, "")
        self.worker = self.worker_prefix + worker_id


class DueKeys:
    """The one key of due_queues.lua: a daemon's rp:due:<daemon>."""

    __slots__ = ("due",)

    def __init__(self, prefix: str, daemon: str) -> None:
        self.due = due_key(prefix, daemon)


@lru_cache(maxsize=4096)
def queue_keys(prefix: str, queue: str) -> QueueKeys:
    return QueueKeys(prefix, queue)


def queues_key(prefix: str) -> str:
    """Global set of queue names (touched by plain commands only, never by a script)."""
    return f"{prefix}:queues"


def workflow_key(prefix: str, workflow_id: str) -> str:
    """One workflow's record (a hash in its own slot; plain commands only)."""
    return f"{prefix}:workflow:{{{workflow_id}}}"


def workflows_key(prefix: str) -> str:
    """Global zset of workflow ids by creation time (ms; plain commands only)."""
    return f"{prefix}:workflows"


def due_key(prefix: str, daemon: str) -> str:
    """Global zset of queue -> the time (ms) ``daemon`` (scheduler or sweeper) next has
    work there (touched by plain commands and the read-only due_queues.lua, never with queue keys)."""
    return f"{prefix}:due:{daemon}"


def workers_index_key(prefix: str) -> str:
    """Zset of worker ids by last heartbeat. The tag ``{#workers}`` cannot clash with a
    queue (``#`` is not allowed in queue names) and keeps the registry in one slot."""
    return f"{prefix}:{{#workers}}:index"


def worker_key(prefix: str, worker_id: str) -> str:
    """Hash of one worker's registration (same slot as the index)."""
    return f"{prefix}:{{#workers}}:w:{worker_id}"


def cueapi_key(prefix: str, queue: str) -> str:
    """Hash of the cueapi compat layer's cue records (cue id -> JSON), under the queue's
    tag (plain HGET/HSET only; the cues themselves are ordinary cues of that queue)."""
    return queue_keys(prefix, queue).cueapi


def cueapi_secret_key(prefix: str, queue: str) -> str:
    """String: the cueapi compat layer's webhook signing secret (``whsec_`` + 64 hex)."""
    return queue_keys(prefix, queue).base + "cueapi_secret"


def cueapi_fire_key(prefix: str, queue: str, cue_id: str, digest: str) -> str:
    """String (24 h TTL): what a cueapi ``fire`` with an idempotency key answered, under
    the key's SHA-256 ``digest``, as JSON ``{fingerprint, response}``."""
    return queue_keys(prefix, queue).base + f"cueapi_fire:{cue_id}:{digest}"


DELIVERY_QUEUE = "_webhooks"   # the deliverer's own queue: every webhook delivery and webhook cue fire


def webhooks_key(prefix: str) -> str:
    """Hash of webhook name -> definition (JSON); global, plain commands only."""
    return f"{prefix}:webhooks"


def spooled_key(prefix: str, kind: str) -> str:
    """The spooled compat layer's records of one kind (``schedules``, ``workflows``,
    ``webhooks``): a global hash, id -> JSON, plain commands only."""
    return f"{prefix}:spooled:{kind}"


def webhook_failures_key(prefix: str, name: str) -> str:
    """One webhook's count of consecutive failed deliveries (a string; plain commands only)."""
    return f"{prefix}:webhook:{name}:failures"


def webhook_log_key(prefix: str, name: str) -> str:
    """List of one webhook's latest delivery attempts (JSON, newest first, capped)."""
    return f"{prefix}:webhook:{name}:log"


def spooled_inbound_key(prefix: str) -> str:
    """Stream of the spooled compat layer's inbound webhook log; global, plain commands only."""
    return f"{prefix}:spooled:inbound"
