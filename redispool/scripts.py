"""The only place Lua scripts are loaded and run.

Each ``lua/<name>.lua`` is prefixed with ``lua/lib.lua``, loaded once with SCRIPT LOAD and
called with EVALSHA; after NOSCRIPT (a Redis restart or SCRIPT FLUSH) it is loaded again
and the call repeated, transparently. Error replies ``"CODE detail"`` become the classes of ``errors.LUA_ERRORS``.

On Redis Cluster every script call names keys of one slot only (the queue's hash tag, or
``{#workers}`` for the registry), so redis-py sends it to the primary of that slot and
follows MOVED/ASK itself; SCRIPT LOAD goes to every primary.

Durable writes (``durable_timeout_ms`` set; the engine's ``durable=True``): the scripts
that create or finish jobs (``DURABLE_SCRIPTS``) are sent in one pipeline with
``WAIT 1 <timeout>`` on the same connection -- WAIT covers only the writes of its own
connection; its reply is read allowing for that timeout (blocking.py) -- and, where the server has WAITAOF (Redis 7.2+) and the primary runs with
AOF, ``WAITAOF 1 0 <timeout>`` too. Fewer acknowledgements than that raise NotDurable
(the write itself was applied on the primary).
"""
from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import redis

from . import blocking
from .errors import LUA_ERRORS, NotDurable

LUA_DIR = Path(__file__).resolve().parent / "lua"
LIB = "lib"
_HEADER_KEY = re.compile(r"^-- KEYS\[(\d+)\]", re.M)
_LIB_FUNCTION = re.compile(r"^local function (\w+)\(.*?^end$", re.M | re.S)
# The scripts whose effects a caller is told are done: enqueue (and cue-less batches),
# complete, fail and ack. Their replies wait for a replica when durable writes are on.
DURABLE_SCRIPTS = frozenset({"enqueue", "complete", "fail", "ack"})
REDIRECT_TRIES = 20        # durable calls on a cluster: MOVED/ASK/TRYAGAIN retries ...
REDIRECT_PAUSE_S = 0.05    # ... this far apart (a slot migration or failover in progress)


def script_names() -> list[str]:
    return sorted(p.stem for p in LUA_DIR.glob("*.lua") if p.stem != LIB)


def read_script(name: str) -> str:
    return (LUA_DIR / f"{name}.lua").read_text()


def with_lib(lib: str, body: str) -> str:
    """``body`` preceded by lib.lua's constants and just the lib functions it calls
    (directly or through other lib functions): defining all of them on every call would
    cost a few microseconds per script run."""
    functions = {m.group(1): m for m in _LIB_FUNCTION.finditer(lib)}
    needed: set[str] = set()
    pending = [body]
    while pending:
        text = pending.pop()
        for name, match in functions.items():
            if name not in needed and re.search(rf"\b{name}\(", text):
                needed.add(name)
                pending.append(match.group(0))
    kept, last = [], 0
    for name, match in functions.items():
        kept.append(lib[last:match.start()])
        if name in needed:
            kept.append(match.group(0))
        last = match.end()
    kept.append(lib[last:])
    return "".join(kept) + "\n" + body


class Scripts:
    """All scripts, ready to run on one client by SHA."""

    def __init__(self, client: Any, *, durable_timeout_ms: int | None = None, url: str = "") -> None:
        self.client = client
        self.url = url
        self.durable_timeout_ms = durable_timeout_ms
        self._cluster = _is_cluster(client)
        self._aof: dict[str, bool] = {}   # per primary: WAITAOF usable (7.2+ and AOF on)
        lib = read_script(LIB)
        self._text: dict[str, str] = {}
        self._sha: dict[str, str] = {}
        self._nkeys: dict[str, int] = {}
        for name in script_names():
            body = read_script(name)
            self._nkeys[name] = len(_HEADER_KEY.findall(body))
            self._text[name] = with_lib(lib, body)
            self._sha[name] = hashlib.sha1(self._text[name].encode()).hexdigest()

    def load(self) -> None:
        """SCRIPT LOAD every script now, so a Lua error shows at start-up, not mid-run."""
        for name, text in self._text.items():
            self._sha[name] = self.client.script_load(text)

    def run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run script ``name`` by SHA, loading it again after NOSCRIPT; ``keys`` must
        match its header."""
        if len(keys) != self._nkeys[name]:
            raise AssertionError(f"{name}.lua takes {self._nkeys[name]} keys, got {len(keys)}")
        if self.durable_timeout_ms is not None and name in DURABLE_SCRIPTS:
            return self._run_durable(name, keys, args)
        try:
            try:
                return self.client.execute_command("EVALSHA", self._sha[name], len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                self._sha[name] = self.client.script_load(self._text[name])
                return self.client.execute_command("EVALSHA", self._sha[name], len(keys), *keys, *args)
        except redis.ResponseError as exc:
            raise lua_error(exc) from None


    # ------------------------------------------------------------------ durable writes
    def _run_durable(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run the script and WAIT (and WAITAOF) on one connection to the slot's primary."""
        from redis.exceptions import AskError, MovedError, TryAgainError

        for _ in range(REDIRECT_TRIES):
            node_name, target = self._primary(keys[0])
            aof = self._aof.get(node_name)
            if aof is None:
                aof = self._aof[node_name] = _waitaof_usable(target)
            commands: list[list[Any]] = [["EVALSHA", self._sha[name], len(keys), *keys, *args],
                                         ["WAIT", 1, self.durable_timeout_ms]]
            if aof:
                commands.append(["WAITAOF", 1, 0, self.durable_timeout_ms])
            try:  # WAIT may hold its reply for durable_timeout: read allowing for that
                replies = blocking.pipeline(target, commands, (self.durable_timeout_ms or 0) / 1000)
            except (redis.ConnectionError, redis.TimeoutError):
                if self._cluster:  # a primary may have failed over: ask the cluster again
                    blocking.refresh_slots(self.client)
                raise
            reply = replies[0]
            if isinstance(reply, redis.exceptions.NoScriptError):
                self._sha[name] = target.script_load(self._text[name])
                continue
            if isinstance(reply, MovedError) and self._cluster:
                blocking.refresh_slots(self.client)
                continue
            if isinstance(reply, (AskError, TryAgainError)) and self._cluster:
                time.sleep(REDIRECT_PAUSE_S)  # the slot is being migrated
                continue
            if isinstance(reply, redis.ResponseError):
                raise lua_error(reply) from None
            if isinstance(reply, Exception):
                raise reply
            try:
                self._check_acks(replies[1:], aof, node_name)
            except NotDurable as exc:
                exc.reply = reply  # what the script did (e.g. the jobs an ack leased)
                raise
            return reply
        raise reply  # still redirected: let the caller back off and retry

    def _primary(self, key: str) -> tuple[str, Any]:
        """(name, client) of the primary holding ``key``: the client itself off-cluster."""
        if not self._cluster:
            return "", self.client
        node = self.client.get_node_from_key(key)
        return node.name, self.client.get_redis_connection(node)

    def _check_acks(self, replies: list[Any], aof: bool, node_name: str) -> None:
        timeout_s = self.durable_timeout_ms / 1000
        replicas = replies[0]
        if isinstance(replicas, Exception):
            raise replicas
        if int(replicas) < 1:
            raise NotDurable(self.url, f"no replica acknowledged the write within {timeout_s:g}s "
                                       "(durable=True); it was applied on the primary only")
        if aof:
            fsynced = replies[1]
            if isinstance(fsynced, Exception):  # AOF switched off since we looked
                self._aof.pop(node_name, None)
            elif int(fsynced[0]) < 1:
                raise NotDurable(self.url, f"the primary did not fsync its AOF within {timeout_s:g}s "
                                           "(durable=True)")


def _is_cluster(client: Any) -> bool:
    from redis.cluster import RedisCluster

    return isinstance(client, RedisCluster)


def _waitaof_usable(client: Any) -> bool:
    """True when the server knows WAITAOF (Redis 7.2+) and has AOF switched on."""
    pool = client.connection_pool
    conn = pool.get_connection()
    try:  # raw reply: redis-py's COMMAND parser cannot read the [nil] of an unknown command
        conn.send_command("COMMAND", "INFO", "WAITAOF")
        info = conn.read_response()
    except redis.ResponseError:
        return False
    finally:
        pool.release(conn)
    if not info or info[0] is None:
        return False
    return bool(int(client.info("persistence").get("aof_enabled", 0)))


def lua_error(exc: redis.ResponseError) -> Exception:
    """Map a script's ``CODE detail`` error reply to its redispool class."""
    message = str(exc)
    for code, cls in LUA_ERRORS.items():
        at = message.find(code + " ")
        if at >= 0:
            return cls(message[at + len(code) + 1:].split(" script:")[0].strip())
    return exc


class Call(NamedTuple):
    """One script run: its name, KEYS and ARGV (``Scripts.run(*call)``). The Engine builds
    these once for the sync and the async engine alike."""

    script: str
    keys: list[str]
    args: list[Any]


class AsyncScripts:
    """The same scripts run by SHA on a ``redis.asyncio`` client (aio.py). Texts and SHAs
    come from the sync ``Scripts``, so both run byte-identical Lua."""

    def __init__(self, client: Any, scripts: Scripts) -> None:
        self.client = client
        self.scripts = scripts

    async def run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run script ``name`` by SHA, loading it again after NOSCRIPT."""
        s = self.scripts
        if len(keys) != s._nkeys[name]:
            raise AssertionError(f"{name}.lua takes {s._nkeys[name]} keys, got {len(keys)}")
        try:
            try:
                return await self.client.execute_command("EVALSHA", s._sha[name], len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                s._sha[name] = await self.client.script_load(s._text[name])
                return await self.client.execute_command("EVALSHA", s._sha[name], len(keys), *keys, *args)
        except redis.ResponseError as exc:
            raise lua_error(exc) from None
