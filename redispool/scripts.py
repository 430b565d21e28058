"""The only place Lua scripts are loaded and run.

``load`` (``connect()`` calls it) loads every ``lua/<name>.lua`` as one Redis Functions
library (FUNCTION LOAD): lib.lua's functions are defined once, when the library loads, and
each script is a function of it, called with FCALL (FCALL_RO for a ``(read only)`` script,
flagged ``no-writes``). The library's name and its functions' names carry a hash of the
scripts, so two versions of redispool can share one Redis (a rolling upgrade): function
names are global in Redis. Where Redis has no functions (before 7.0, a proxy that refuses
them), each script is instead prefixed with the lib functions it uses, loaded with SCRIPT
LOAD and called with EVALSHA, which defines those functions on every call. After a
"Function not found" (a Redis restarted without its data, FUNCTION FLUSH, a failover to a
primary without the library) or NOSCRIPT the library or script is loaded again and the
call repeated, transparently. Error replies ``"CODE detail"`` become the classes of
``errors.LUA_ERRORS``.

At maxmemory an EVAL script is refused at its first write that may grow memory, while a
function is refused before it runs unless flagged ``allow-oom``. A header line ``-- At
maxmemory: runs`` flags a script whose first write is one Redis allows there (ZREM, DEL,
HDEL: it finishes, moves or deletes jobs), so each script runs at maxmemory exactly when
it did as an EVAL script. A FUNCTION LOAD refused at maxmemory (or on a read-only replica)
leaves the Scripts on EVALSHA, and the library is tried again ``LIBRARY_RETRY_S`` later.

The script headers are read here too. An ``Op`` (ops.py) names where its KEYS come from,
and ``bind`` reads each ``-- KEYS[i] <pattern>`` line's key *by name* from it
(``key_name``), so no caller lists keys in order. A header line ``-- Durable: yes`` marks
a script whose effects the caller is told are done.

This is also the one Redis boundary of the Engine: every script call (``run``) and plain
command (``command``, ``pipeline``, ``boundary``) maps Redis trouble (``REDIS_TROUBLE``:
a lost connection, a timeout, a cluster in flux, a full server) to ``ConnectionFailed`` or
``RedisFull`` naming the masked URL; ``AsyncScripts`` does the same on an async client
(and ``ServerBusy`` when its pool has no free connection).

On Redis Cluster every script call names keys of one slot only (the queue's hash tag, or
``{#workers}`` for the registry), so redis-py sends it to the primary of that slot and
follows MOVED/ASK itself; FUNCTION LOAD (or SCRIPT LOAD) goes to every primary, and again
to every primary when one answers "Function not found" (a new primary).

Durable writes (``durable_timeout_ms`` set; the engine's ``durable=True``): the scripts
that create or finish jobs (``-- Durable: yes``) are sent in one pipeline with
``WAIT 1 <timeout>`` on the same connection -- WAIT covers only the writes of its own
connection; its reply is read allowing for that timeout (blocking.py) -- and, where the
server has WAITAOF (Redis 7.2+) and the primary runs with AOF, ``WAITAOF 1 0 <timeout>``
too. Fewer acknowledgements than that raise NotDurable (the write itself was applied on
the primary).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import redis

from . import blocking
from .direct import async_direct_executor, direct_executor
from .errors import LUA_ERRORS, REDIS_TROUBLE, NotDurable, RedispoolError, ServerBusy, from_redis
from .keys import QueueKeys
from .ops import text

if TYPE_CHECKING:
    from .ops import Op

LUA_DIR = Path(__file__).resolve().parent / "lua"
LIB = "lib"
_HEADER_KEY = re.compile(r"^-- KEYS\[\d+\]\s+(\S+)", re.M)
_DURABLE = re.compile(r"^-- Durable: yes\b", re.M)
_AT_MAXMEMORY = re.compile(r"^-- At maxmemory: runs\b", re.M)
_RUN_STATE = re.compile(r"^-- Per-run state.*?$(.*?)^-- end of per-run state", re.M | re.S)
_STATE_LINE = re.compile(r"^local (\w+) = (.+?)\s*(?:--.*)?$", re.M)
_LIB_FUNCTION = re.compile(r"^local function (\w+)\(.*?^end$", re.M | re.S)
# header key patterns whose attribute is not their last part (keys.py has the table)
_KEY_NAMES = {"job:": "job_prefix", "children:": "children_prefix", "cue_runs:": "cue_runs_prefix",
              "<state>": "state", "w:<id>": "worker",
              "w:": "worker_prefix", "due:<daemon>": "due"}
REDIRECT_TRIES = 20        # durable calls on a cluster: MOVED/ASK/TRYAGAIN retries ...
REDIRECT_PAUSE_S = 0.05    # ... this far apart (a slot migration or failover in progress)
LIBRARY_RETRY_S = 60.0     # a FUNCTION LOAD refused for now (maxmemory, a replica): EVALSHA, then again


def script_names() -> list[str]:
    return sorted(p.stem for p in LUA_DIR.glob("*.lua") if p.stem != LIB)


def read_script(name: str) -> str:
    return (LUA_DIR / f"{name}.lua").read_text()


def key_name(pattern: str) -> str:
    """The attribute a header's key pattern is bound from: ``rp:{q}:ready`` -> ``ready``,
    ``rp:{q}:job:`` -> ``job_prefix``, ``rp:{#workers}:w:<id>`` -> ``worker``,
    ``rp:due:<daemon>`` -> ``due`` (the prefix and the hash tag are left out)."""
    rest = pattern.split(":", 1)[1]
    if rest.startswith("{"):
        rest = rest.split("}:", 1)[1]
    return _KEY_NAMES.get(rest, rest)


class Header(NamedTuple):
    """What a script's header says about calling it: its KEYS' names, in order, whether
    its writes are durable ones, whether it only reads (``(read only)`` on its first
    line) and whether it runs at maxmemory (``-- At maxmemory: runs``)."""

    keys: tuple[str, ...]
    durable: bool
    read_only: bool = False
    at_maxmemory: bool = False


def read_header(body: str) -> Header:
    lines = []
    for line in body.splitlines():
        if not line.startswith("--"):
            break
        lines.append(line)
    head = "\n".join(lines)
    return Header(tuple(key_name(p) for p in _HEADER_KEY.findall(head)), bool(_DURABLE.search(head)),
                  "(read only)" in lines[0] if lines else False, bool(_AT_MAXMEMORY.search(head)))


@functools.lru_cache(maxsize=4)
def _lib_functions(lib: str) -> tuple[dict[str, re.Match[str]], re.Pattern[str] | None]:
    """lib.lua's functions by name, and a pattern that finds calls of any of them."""
    functions = {m.group(1): m for m in _LIB_FUNCTION.finditer(lib)}
    calls = re.compile(r"\b(" + "|".join(map(re.escape, functions)) + r")\(") if functions else None
    return functions, calls


def lib_calls(lib: str, body: str) -> set[str]:
    """The lib functions ``body`` calls, directly or through other lib functions."""
    functions, calls = _lib_functions(lib)
    needed: set[str] = set()
    pending = [body]
    while pending and calls is not None:
        for name in calls.findall(pending.pop()):
            if name not in needed:
                needed.add(name)
                pending.append(functions[name].group(0))
    return needed


def with_lib(lib: str, body: str) -> str:
    """``body`` preceded by lib.lua's constants and just the lib functions it calls
    (directly or through other lib functions): defining all of them on every call would
    cost a few microseconds per script run."""
    functions, _ = _lib_functions(lib)
    needed = lib_calls(lib, body)
    kept, last = [], 0
    for name, match in functions.items():
        kept.append(lib[last:match.start()])
        if name in needed:
            kept.append(match.group(0))
        last = match.end()
    kept.append(lib[last:])
    return "".join(kept) + "\n" + body


class Loaded(NamedTuple):
    """One script as every Scripts holds it: its header, its text as loaded, its SHA."""

    header: Header
    text: str
    sha: str


@functools.lru_cache(maxsize=1)
def loaded_scripts() -> dict[str, Loaded]:
    """Every script, read and assembled once per process (each Engine shares them)."""
    lib = read_script(LIB)
    out = {}
    for name in script_names():
        body = read_script(name)
        text = with_lib(lib, body)
        out[name] = Loaded(read_header(body), text, hashlib.sha1(text.encode()).hexdigest())
    return out


def run_state(lib: str) -> list[tuple[str, str]]:
    """lib.lua's per-run state: (name, initial value) of each local its block declares."""
    block = _RUN_STATE.search(lib)
    if block is None:
        raise AssertionError("lib.lua has no per-run state block")
    return _STATE_LINE.findall(block.group(1))


def uses_run_state(lib: str, body: str) -> bool:
    """True when ``body``, or a lib function it calls, names a local of lib's per-run state.
    A script that names none can neither read nor change it, so its function need not reset
    it (three tables fewer per call: enqueue_plain); the next script that uses it resets it."""
    names = re.compile(r"\b(" + "|".join(name for name, _ in run_state(lib)) + r")\b")
    functions, _ = _lib_functions(lib)
    return any(names.search(text) for text in [body, *(functions[f].group(0) for f in lib_calls(lib, body))])


class Library(NamedTuple):
    """Every script as one Redis Functions library: its name, its code for FUNCTION LOAD,
    and per script the function's name and the command that calls it (FCALL / FCALL_RO)."""

    name: str
    code: str
    functions: dict[str, str]
    verbs: dict[str, str]


@functools.lru_cache(maxsize=1)
def function_library() -> Library:
    """The library, built once per process: lib.lua whole (its functions are defined once,
    at FUNCTION LOAD), a function resetting lib's per-run state, then each script's body as
    the callback of a function that resets that state first (if it uses it:
    ``uses_run_state``), its KEYS and ARGV as the callback's parameters of those names."""
    lib = read_script(LIB)
    bodies = {name: read_script(name) for name in script_names()}
    digest = hashlib.sha1("\0".join([lib, *(f"{n}\n{b}" for n, b in bodies.items())]).encode()).hexdigest()[:16]
    name = f"redispool_{digest}"
    reset = "".join(f"  {var} = {value}\n" for var, value in run_state(lib))
    parts = [f"#!lua name={name}\n", lib, f"\nlocal function rp_reset_run()\n{reset}end\n"]
    functions, verbs = {}, {}
    for script, body in bodies.items():
        header = read_header(body)
        functions[script] = f"rp_{digest}_{script}"
        verbs[script] = "FCALL_RO" if header.read_only else "FCALL"
        reset_call = "rp_reset_run()\n" if uses_run_state(lib, body) else ""
        flags = "'no-writes'" if header.read_only else "'allow-oom'" if header.at_maxmemory else ""
        parts.append(f"redis.register_function{{function_name = '{functions[script]}', flags = {{ {flags} }},\n"
                     f"callback = function(KEYS, ARGV)\n{reset_call}{body}\nend}}\n")
    return Library(name, "".join(parts), functions, verbs)


def waited(popped: Any, reply: Any, marker: str) -> tuple[bool, bool]:
    """The replies of a wait and the script sent with it (``call_after_wait``): whether
    ``marker`` was popped, and whether the script must run again (its function or script
    was missing); the wait's error, or the script's, is raised."""
    if isinstance(popped, Exception):
        raise popped
    woken = popped is not None and text(popped[0]) == marker
    if missing(reply):
        return woken, True
    if isinstance(reply, redis.ResponseError):
        raise lua_error(reply) from None
    return woken, False


def missing(reply: object) -> bool:
    """True for the error of a call whose function or script the server does not hold
    (after a restart without data, FUNCTION FLUSH / SCRIPT FLUSH, a failover)."""
    if isinstance(reply, redis.exceptions.NoScriptError):
        return True
    return isinstance(reply, redis.ResponseError) and str(reply).startswith(("Function not found",
                                                                               "ERR Function not found"))


def _already_loaded(exc: redis.ResponseError) -> bool:
    return "already exists" in str(exc)


def _primaries(client: Any) -> list[dict[str, Any]]:
    """execute_command keywords addressing each primary: one empty set off-cluster."""
    if hasattr(client, "get_primaries"):
        return [{"target_nodes": node} for node in client.get_primaries()]
    return [{}]


def _fcall_keys(args: Sequence[Any]) -> list[Any] | None:
    """The keys of ``FCALL fn numkeys key...``, or None for another command."""
    if len(args) > 2 and isinstance(args[0], str) and args[0].upper() in ("FCALL", "FCALL_RO"):
        return list(args[3:3 + int(args[2])])
    return None


class _FcallKeys:
    """A redis-py cluster client's CommandsParser that reads FCALL's keys from its numkeys
    (as redis-py does for EVALSHA) instead of asking a node (COMMAND GETKEYS: redis-py
    sent two per FCALL, each a round trip)."""

    def __init__(self, parser: Any) -> None:
        self._parser = parser

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parser, name)

    def get_keys(self, redis_conn: Any, *args: Any) -> Any:
        keys = _fcall_keys(args)
        return self._parser.get_keys(redis_conn, *args) if keys is None else keys


class _AsyncFcallKeys(_FcallKeys):
    """The same for a ``redis.asyncio`` cluster client."""

    async def get_keys(self, *args: Any) -> Any:
        keys = _fcall_keys(args)
        return await self._parser.get_keys(*args) if keys is None else keys


def _read_fcall_keys(client: Any, parser: type[_FcallKeys]) -> None:
    """Let a cluster ``client`` (and its pipelines) route FCALL by its keys without asking."""
    current = getattr(client, "commands_parser", None)
    if current is not None and not isinstance(current, _FcallKeys):
        client.commands_parser = parser(current)


class Scripts:
    """All scripts, ready to run on one client: by FCALL once ``load`` loaded the function
    library, else (no functions there, or not loaded) by EVALSHA."""

    def __init__(self, client: Any, *, durable_timeout_ms: int | None = None, url: str = "") -> None:
        self.client = client
        self.url = url
        self.durable_timeout_ms = durable_timeout_ms
        self._cluster = _is_cluster(client)
        if self._cluster:
            _read_fcall_keys(client, _FcallKeys)
        self._aof: dict[str, bool] = {}   # per primary: WAITAOF usable (7.2+ and AOF on)
        scripts = loaded_scripts()
        self.headers = {name: s.header for name, s in scripts.items()}
        self._text = {name: s.text for name, s in scripts.items()}
        self._sha = {name: s.sha for name, s in scripts.items()}
        self._nkeys = {name: len(s.header.keys) for name, s in scripts.items()}
        self.library = function_library()
        self.functions: dict[str, str] | None = None  # the library's functions while it is loaded
        self.library_retry_at: float | None = None    # monotonic time to try FUNCTION LOAD again
        # a script call: on a plain client's pool directly (direct.py), else execute_command
        self._execute = direct_executor(client) or client.execute_command

    def text(self, name: str) -> str:
        """Script ``name`` as loaded (lib functions first)."""
        return self._text[name]

    def sha(self, name: str) -> str:
        return self._sha[name]

    def durable(self, name: str) -> bool:
        """True for a script whose header says ``-- Durable: yes``."""
        return self.headers[name].durable

    def bind(self, name: str, source: Any) -> list[str]:
        """Script ``name``'s KEYS, each read by its header name from ``source`` (a
        QueueKeys, StateKeys, RegistryKeys or DueKeys). A QueueKeys keeps the lists it
        gave (one per script: the hot path binds each once per queue)."""
        if isinstance(source, QueueKeys):
            keys = source.bound.get(name)
            if keys is None:
                keys = source.bound[name] = [getattr(source, key) for key in self.headers[name].keys]
            return keys
        return [getattr(source, key) for key in self.headers[name].keys]

    def load(self) -> None:
        """Load the function library now (else SCRIPT LOAD every script), so a Lua error
        shows at start-up, not mid-run."""
        with self.boundary():
            if not self.load_library():
                for name, text in self._text.items():
                    self._sha[name] = self.client.script_load(text)

    def load_library(self) -> bool:
        """FUNCTION LOAD the library on every primary (one loaded already is left as it
        is); True when calls go by FCALL from now on. A server without functions leaves
        the Scripts on EVALSHA; one that refuses the load for now (at maxmemory, read-only)
        too, until ``LIBRARY_RETRY_S`` later."""
        self.library_retry_at = None
        try:
            for target in _primaries(self.client):
                try:
                    self.client.execute_command("FUNCTION", "LOAD", self.library.code, **target)
                except redis.ResponseError as exc:
                    if not _already_loaded(exc):
                        raise
        except (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError):
            self.library_retry_at = time.monotonic() + LIBRARY_RETRY_S
            self.functions = None
            return False
        except redis.ResponseError:   # no FUNCTION command (Redis < 7, a proxy): EVALSHA
            self.functions = None
            return False
        self.functions = self.library.functions
        return True

    def restore(self, name: str | None = None) -> None:
        """Load again what a call found missing: the library (or, on EVALSHA, script
        ``name``, or every script when None)."""
        if self.functions is not None and self.load_library():
            return
        for script in [name] if name else list(self._text):
            self._sha[script] = self.client.script_load(self._text[script])

    def command_for(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> list[Any]:
        """The command that runs script ``name``: FCALL / FCALL_RO or EVALSHA."""
        functions = self.functions
        if functions is None:
            return ["EVALSHA", self._sha[name], len(keys), *keys, *args]
        return [self.library.verbs[name], functions[name], len(keys), *keys, *args]

    def queue(self, pipe: Any, name: str, keys: Sequence[str], args: Sequence[Any]) -> None:
        """Add a call of script ``name`` to pipeline ``pipe``; after its execute, a
        ``missing`` reply means ``restore()`` and sending the pipeline again."""
        pipe.execute_command(*self.command_for(name, keys, args))

    def call(self, op: Op[Any]) -> Any:
        """Run ``op``'s script with its KEYS bound from the header; the raw reply."""
        return self.run(op.script, self.bind(op.script, op.keys), op.args)

    def run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run script ``name`` by SHA, loading it again after NOSCRIPT; ``keys`` must
        match its header. Redis trouble becomes ConnectionFailed / RedisFull."""
        if len(keys) != self._nkeys[name]:
            raise AssertionError(f"{name}.lua takes {self._nkeys[name]} keys, got {len(keys)}")
        try:
            if self.library_retry_at is not None and time.monotonic() >= self.library_retry_at:
                self.load_library()
            if self.durable_timeout_ms is not None and self.headers[name].durable:
                return self._run_durable(name, keys, args)
            try:
                return self._execute(*self.command_for(name, keys, args))
            except redis.ResponseError as exc:
                if not missing(exc):
                    raise
            self.restore(name)
            return self._execute(*self.command_for(name, keys, args))
        except RedispoolError:
            raise
        except REDIS_TROUBLE as exc:
            raise from_redis(self.url, exc) from exc
        except redis.ResponseError as exc:
            raise lua_error(exc) from None

    def call_after_wait(self, marker: str, wait: float, op: Op[Any],
                        interrupt: str | None = None) -> tuple[bool, Any]:
        """``BZPOPMIN marker wait`` and ``op``'s script sent together on one connection:
        Redis runs the script the moment the wait ends, so a woken claimer has its jobs one
        round trip sooner. (whether the marker was popped, the script's raw reply). On a
        Cluster the two go one after the other (blocking.py follows the marker's slot).
        ``interrupt`` (off Cluster): a key the wait also pops, to be ended early."""
        keys = self.bind(op.script, op.keys)
        if self._cluster:
            with self.boundary():
                popped = blocking.bzpopmin(self.client, [marker], wait)
            return popped is not None, self.run(op.script, keys, op.args)
        waits = [marker, interrupt] if interrupt else [marker]
        with self.boundary():
            popped, reply = blocking.pipeline(
                self.client, [["BZPOPMIN", *waits, wait],
                              self.command_for(op.script, keys, op.args)], wait)
        woken, again = waited(popped, reply, marker)
        return woken, self.run(op.script, keys, op.args) if again else reply   # (loaded again there)

    @contextlib.contextmanager
    def boundary(self) -> Iterator[None]:
        """Redis trouble inside becomes ConnectionFailed / RedisFull (for the few plain
        commands that are not ``command`` or ``pipeline``, such as a blocking wait)."""
        try:
            yield
        except RedispoolError:
            raise
        except REDIS_TROUBLE as exc:
            raise from_redis(self.url, exc) from exc

    def command(self, *args: Any) -> Any:
        """One plain command (``"HGETALL", key``), with redis-py's reply parsing."""
        with self.boundary():
            return self.client.execute_command(*args)

    def pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Plain commands in one non-transactional pipeline; their replies."""
        with self.boundary():
            pipe = self.client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            return list(pipe.execute())


    # ------------------------------------------------------------------ durable writes
    def _run_durable(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run the script and WAIT (and WAITAOF) on one connection to the slot's primary."""
        from redis.exceptions import AskError, MovedError, TryAgainError

        for _ in range(REDIRECT_TRIES):
            node_name, target = self._primary(keys[0])
            aof = self._aof.get(node_name)
            if aof is None:
                aof = self._aof[node_name] = _waitaof_usable(target)
            commands: list[list[Any]] = [self.command_for(name, keys, args),
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
            if missing(reply):
                self.restore(name)
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
        timeout_s = (self.durable_timeout_ms or 0) / 1000
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


class AsyncScripts:
    """The same scripts run on a ``redis.asyncio`` client (aio.py), by FCALL while the sync
    ``Scripts`` has the library loaded, else by SHA. Library, texts, SHAs and headers come
    from the sync ``Scripts``, so both run byte-identical Lua."""

    def __init__(self, client: Any, scripts: Scripts, *, pool_wait: float = 5.0) -> None:
        self.client = client
        self.scripts = scripts
        self.url = scripts.url
        self.pool_wait = pool_wait
        if hasattr(client, "get_primaries"):   # a cluster client
            _read_fcall_keys(client, _AsyncFcallKeys)
        # a script call: on a plain async client's pool directly (direct.py), else execute_command
        self._execute = async_direct_executor(client) or client.execute_command

    async def call(self, op: Op[Any]) -> Any:
        """Run ``op``'s script with its KEYS bound from the header; the raw reply."""
        return await self.run(op.script, self.scripts.bind(op.script, op.keys), op.args)

    async def run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run script ``name`` by SHA, loading it again after NOSCRIPT."""
        s = self.scripts
        if len(keys) != s._nkeys[name]:
            raise AssertionError(f"{name}.lua takes {s._nkeys[name]} keys, got {len(keys)}")
        try:
            try:
                return await self._execute(*s.command_for(name, keys, args))
            except redis.ResponseError as exc:
                if not missing(exc):
                    raise
            await self.restore(name)
            return await self._execute(*s.command_for(name, keys, args))
        except RedispoolError:
            raise
        except REDIS_TROUBLE as exc:
            raise self.error(exc) from exc
        except redis.ResponseError as exc:
            raise lua_error(exc) from None

    async def call_after_wait(self, client: Any, marker: str, wait: float, op: Op[Any]) -> tuple[bool, Any]:
        """``Scripts.call_after_wait`` on ``client`` (a ``redis.asyncio`` client whose
        blocked connections keep no one else waiting: the wait hub's)."""
        keys = self.scripts.bind(op.script, op.keys)
        try:
            if blocking.is_cluster(client):
                popped = await blocking.bzpopmin_async(client, [marker], wait)
                return popped is not None, await self.run(op.script, keys, op.args)
            popped, reply = await blocking.pipeline_async(
                client, [["BZPOPMIN", marker, wait],
                         self.scripts.command_for(op.script, keys, op.args)], wait)
        except RedispoolError:
            raise
        except REDIS_TROUBLE as exc:
            raise self.error(exc) from exc
        woken, again = waited(popped, reply, marker)
        return woken, await self.run(op.script, keys, op.args) if again else reply   # (loaded again there)

    async def run_many(self, name: str, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]) -> list[Any]:
        """Run script ``name`` once per (keys, args) in ``calls``, pipelined: one round trip
        (loading it again after NOSCRIPT). Per call its raw reply, or its error in place
        (a script's error reply mapped as ``run`` maps it); Redis trouble raises."""
        s = self.scripts
        for keys, _ in calls:
            if len(keys) != s._nkeys[name]:
                raise AssertionError(f"{name}.lua takes {s._nkeys[name]} keys, got {len(keys)}")
        for loaded in (False, True):
            try:
                pipe = self.client.pipeline(transaction=False)
                for keys, args in calls:
                    pipe.execute_command(*s.command_for(name, keys, args))
                replies = list(await pipe.execute(raise_on_error=False))
                if not loaded and any(missing(r) for r in replies):
                    await self.restore(name)
                    continue
            except RedispoolError:
                raise
            except REDIS_TROUBLE as exc:
                raise self.error(exc) from exc
            return [lua_error(r) if isinstance(r, redis.ResponseError) else r for r in replies]
        raise AssertionError("unreachable")  # pragma: no cover

    async def restore(self, name: str) -> None:
        """Load again what a call found missing: the library on every primary (where the
        sync Scripts calls by FCALL; if the load is refused, both go over to EVALSHA), or
        script ``name``."""
        s = self.scripts
        if s.functions is not None:
            try:
                for target in _primaries(self.client):
                    try:
                        await self.client.execute_command("FUNCTION", "LOAD", s.library.code, **target)
                    except redis.ResponseError as exc:
                        if not _already_loaded(exc):
                            raise
                return
            except (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError):
                s.functions, s.library_retry_at = None, time.monotonic() + LIBRARY_RETRY_S
            except redis.ResponseError:
                s.functions = None
        await self.client.script_load(s.text(name))

    def error(self, exc: BaseException) -> Exception:
        """The redispool error for Redis trouble on the async client."""
        if pool_exhausted(exc):
            return ServerBusy(self.url, self.pool_wait)
        return from_redis(self.url, exc)

    async def command(self, *args: Any) -> Any:
        """One plain command on the async client, with redis-py's reply parsing."""
        try:
            return await self.client.execute_command(*args)
        except RedispoolError:
            raise
        except REDIS_TROUBLE as exc:
            raise self.error(exc) from exc

    async def pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Plain commands in one non-transactional pipeline on the async client."""
        try:
            pipe = self.client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            return list(await pipe.execute())
        except RedispoolError:
            raise
        except REDIS_TROUBLE as exc:
            raise self.error(exc) from exc


def pool_exhausted(exc: BaseException) -> bool:
    """True for redis-py's "no connection came free in the pool's timeout"."""
    return isinstance(exc, redis.ConnectionError) and str(exc) == "No connection available."
