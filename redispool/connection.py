"""Turn a redispool URL into a redis-py client.

Schemes: ``redis://``, ``rediss://``, ``unix://`` (plain redis-py),
``redis+cluster://[user:pass@]host:port[,host:port...]`` (Redis Cluster),
``redis+sentinel://[user:pass@]host:port[,...]/service[?db=N]`` (Sentinel), and
``memory://[name]`` (an in-process fakeredis server running the same Lua; every
``memory://name`` in one process shares one server).

Query parameters that redispool reads itself, on any scheme, and takes out of the URL
before redis-py sees it: ``durable`` (``1``/``true``/``yes`` or ``0``/``false``/``no``)
and ``durable_timeout`` (seconds), the Engine options of the same names.

Timeouts. Connecting gives up after ``CONNECT_TIMEOUT_S`` (5 s). Every reply is read with
a finite timeout, ``READ_TIMEOUT_S`` (10 s: far above any redispool command, which takes
well under a millisecond of server time, yet short enough that a server that hangs or
vanishes without closing the connection is noticed). A blocking command's reply is
allowed its wait plus that timeout (blocking.py): ``claim(block=30)`` reads for up to
40 s. ``?socket_timeout=S`` and ``?socket_connect_timeout=S`` in the URL (any scheme but
``memory://``) replace the two defaults; sentinels are always asked with 5 s timeouts.
"""
from __future__ import annotations

import threading
from typing import Any
from urllib.parse import parse_qs, parse_qsl, unquote, urlencode, urlsplit

import redis

from .errors import REDIS_TROUBLE, ConnectionFailed, InvalidOption, mask_url

CONNECT_TIMEOUT_S = 5.0    # connecting gives up after this long
READ_TIMEOUT_S = 10.0      # every reply, plus the wait of a blocking command (blocking.py)
SENTINEL_TIMEOUT_S = 5.0   # a sentinel answers at once or is treated as down
ENGINE_PARAMS = ("durable", "durable_timeout")
TIMEOUT_PARAMS = ("socket_timeout", "socket_connect_timeout")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_memory_servers: dict[str, Any] = {}
_memory_lock = threading.Lock()


def engine_options(url: str) -> dict[str, Any]:
    """The Engine options a URL carries in its query (``?durable=1&durable_timeout=2``)."""
    options: dict[str, Any] = {}
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if name == "durable":
            if value.lower() not in _TRUE + _FALSE:
                raise InvalidOption(f"durable must be 1/true/yes or 0/false/no in the URL, got {value!r}")
            options["durable"] = value.lower() in _TRUE
        elif name == "durable_timeout":
            try:
                options["durable_timeout"] = float(value)
            except ValueError:
                raise InvalidOption(f"durable_timeout must be a number of seconds, got {value!r}") from None
    return options


def _without_engine_params(url: str) -> str:
    base, sep, query = url.partition("?")
    if not sep:
        return url
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in ENGINE_PARAMS]
    # not urlunsplit: it would turn unix:///path into unix:/path
    return f"{base}?{urlencode(kept)}" if kept else base


def make_client(url: str) -> Any:
    """Build the client for ``url``. No round trip yet, except for a cluster, whose client
    asks a node for the slot map at once (ConnectionFailed when none answers)."""
    url = _without_engine_params(url)
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("redis", "rediss", "unix"):
        try:  # the URL's own ?socket_timeout= and the like win over these defaults
            return redis.Redis.from_url(url, **_timeouts(tcp=scheme != "unix"))
        except (ValueError, TypeError) as exc:
            raise InvalidOption(f"bad Redis URL {mask_url(url)}: {exc}") from None
    if scheme == "memory":
        return _memory_client(url)
    if scheme == "redis+cluster":
        return _cluster_client(url)
    if scheme == "redis+sentinel":
        return _sentinel_client(url)
    raise ConnectionFailed(url, "unknown URL scheme (use redis://, rediss://, unix://, "
                                "redis+cluster://, redis+sentinel:// or memory://)")


def _timeouts(query: str = "", *, tcp: bool = True) -> dict[str, Any]:
    """redispool's connection options, with ``?socket_timeout=`` / ``?socket_connect_timeout=``
    from ``query`` (cluster and sentinel URLs; redis-py reads them from the others)."""
    options: dict[str, Any] = {"socket_timeout": READ_TIMEOUT_S, "socket_connect_timeout": CONNECT_TIMEOUT_S}
    if tcp:  # a unix socket has no TCP keepalive (redis-py refuses the option there)
        options["socket_keepalive"] = True
    for name, value in parse_qsl(query):
        if name in TIMEOUT_PARAMS:
            try:
                options[name] = float(value)
            except ValueError:
                raise InvalidOption(f"{name} must be a number of seconds, got {value!r}") from None
            if options[name] <= 0:
                raise InvalidOption(f"{name} must be > 0 seconds, got {value!r}")
    return options


def _hosts(netloc: str) -> tuple[list[tuple[str, int]], str | None, str | None]:
    """Split ``user:pass@h1:p1,h2:p2`` into hosts, username and password."""
    username = password = None
    if "@" in netloc:
        auth, netloc = netloc.rsplit("@", 1)
        username, _, password = auth.partition(":")
        username, password = unquote(username) or None, unquote(password) or None
    hosts = []
    for part in netloc.split(","):
        host, _, port = part.strip().rpartition(":")
        hosts.append((host.strip("[]") or "localhost", int(port or 6379)))
    return hosts, username, password


def _memory_client(url: str) -> Any:
    import fakeredis

    name = url.split("://", 1)[1].strip("/")
    with _memory_lock:
        server = _memory_servers.get(name)
        if server is None:
            server = _memory_servers[name] = fakeredis.FakeServer(version=(7,))
    return fakeredis.FakeRedis(server=server)


def _cluster_client(url: str) -> Any:
    from redis.cluster import ClusterNode, RedisCluster

    parts = urlsplit(url)
    hosts, username, password = _hosts(parts.netloc)
    try:
        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in hosts],  # type: ignore[no-untyped-call]
                            username=username, password=password, **_timeouts(parts.query))
    except REDIS_TROUBLE as exc:  # RedisClusterException: no startup node answered
        raise ConnectionFailed(url, _cluster_reason(exc)) from None


def _cluster_reason(exc: BaseException) -> str:
    """redis-py's "Redis Cluster cannot be connected. Please provide at least one reachable
    node: <last error>" as one short line."""
    text = " ".join(str(exc).split())
    _, sep, last = text.partition("reachable node: ")
    return f"no cluster node answered (last: {last})" if sep else text


def _sentinel_client(url: str) -> Any:
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    from redis.sentinel import Sentinel

    parts = urlsplit(url)
    hosts, username, password = _hosts(parts.netloc)
    service = parts.path.strip("/")
    if not service:
        raise ConnectionFailed(url, "a sentinel URL needs the service name as its path")
    query = parse_qs(parts.query)
    try:
        db = int(query.get("db", ["0"])[0])
    except ValueError:
        raise InvalidOption(f"db must be a database number, got {query['db'][0]!r}") from None
    # No retries on a sentinel: the next sentinel is asked at once (redis-py's default
    # retry backs off for seconds on each unreachable sentinel before moving on).
    sentinel_kwargs: dict[str, Any] = {"socket_timeout": SENTINEL_TIMEOUT_S,
                                       "socket_connect_timeout": CONNECT_TIMEOUT_S,
                                       "retry": Retry(NoBackoff(), 0)}
    if password:
        sentinel_kwargs["password"] = password
    sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    # After a failover the pool asks the sentinels for the new master on its next
    # connect; a connection still open to a demoted master fails with READONLY, which
    # redis-py turns into a ConnectionError, so callers retry as for any lost connection.
    return sentinel.master_for(service, db=db, username=username, password=password,  # type: ignore[no-untyped-call]
                               **_timeouts(parts.query))
