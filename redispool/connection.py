"""Turn a redispool URL into a redis-py client.

Schemes: ``redis://``, ``rediss://``, ``unix://`` (plain redis-py),
``redis+cluster://[user:pass@]host:port[,host:port...]`` (Redis Cluster),
``redis+sentinel://[user:pass@]host:port[,...]/service[?db=N]`` (Sentinel), and
``memory://[name]`` (an in-process fakeredis server running the same Lua; every
``memory://name`` in one process shares one server).

Query parameters that redispool reads itself, on any scheme, and takes out of the URL
before redis-py sees it: ``durable`` (``1``/``true``/``yes`` or ``0``/``false``/``no``)
and ``durable_timeout`` (seconds), the Engine options of the same names.
"""
from __future__ import annotations

import threading
from typing import Any
from urllib.parse import parse_qs, parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import redis

from .errors import ConnectionFailed, InvalidOption

# Connecting gives up after this long. There is no read timeout: blocking claims wait
# on the socket for as long as they were asked to.
CONNECT_TIMEOUT_S = 5.0
SENTINEL_TIMEOUT_S = 5.0   # a sentinel answers at once or is treated as down
ENGINE_PARAMS = ("durable", "durable_timeout")
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
    parts = urlsplit(url)
    if not parts.query:
        return url
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ENGINE_PARAMS]
    return urlunsplit(parts._replace(query=urlencode(kept)))


def make_client(url: str) -> Any:
    """Build the client for ``url`` (no round trip yet)."""
    url = _without_engine_params(url)
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("redis", "rediss", "unix"):
        return redis.Redis.from_url(url, socket_keepalive=True,
                                     socket_connect_timeout=CONNECT_TIMEOUT_S)
    if scheme == "memory":
        return _memory_client(url)
    if scheme == "redis+cluster":
        return _cluster_client(url)
    if scheme == "redis+sentinel":
        return _sentinel_client(url)
    raise ConnectionFailed(url, "unknown URL scheme (use redis://, rediss://, unix://, "
                                "redis+cluster://, redis+sentinel:// or memory://)")


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
    return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in hosts],
                        username=username, password=password, socket_keepalive=True,
                        socket_connect_timeout=CONNECT_TIMEOUT_S)


def _sentinel_client(url: str) -> Any:
    from redis.sentinel import Sentinel

    parts = urlsplit(url)
    hosts, username, password = _hosts(parts.netloc)
    service = parts.path.strip("/")
    if not service:
        raise ConnectionFailed(url, "a sentinel URL needs the service name as its path")
    query = parse_qs(parts.query)
    db = int(query.get("db", ["0"])[0])
    # The read timeout applies to the sentinels only: connections to the master carry
    # blocking claims, which wait on the socket as long as they were asked to.
    sentinel_kwargs = {"socket_timeout": SENTINEL_TIMEOUT_S, "socket_connect_timeout": CONNECT_TIMEOUT_S}
    if password:
        sentinel_kwargs["password"] = password
    sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_kwargs)
    # After a failover the pool asks the sentinels for the new master on its next
    # connect; a connection still open to a demoted master fails with READONLY, which
    # redis-py turns into a ConnectionError, so callers retry as for any lost connection.
    return sentinel.master_for(service, db=db, username=username, password=password,
                               socket_keepalive=True, socket_connect_timeout=CONNECT_TIMEOUT_S)
