"""The web kit under every face of ``redispool serve`` (``/v1``, ``/compat/*``, the
dashboard): what each of them would otherwise write again.

- ``auth``: tokens, roles, the bearer header and the dashboard's cookie;
- ``body``: reading a JSON body within the size limit, field checks, JSON out;
- ``endpoint``: one route wrapper driven by a per-protocol ``Dialect`` (error table);
- ``workers``: the registry bookkeeping of HTTP workers (what each holds, in Redis);
- ``access``, ``guard``, ``outage``, ``metrics``: the access log and request metrics,
  the browser guard, and what a client is told when Redis is in trouble;
- ``hub``: one blocked connection per queue for every waiting claim;
- ``waiting``: the server's async engine per event loop, and the shutdown switch that
  ends long-polls and event streams;
- ``sse``: queues' event logs as Server-Sent Events (``/v1/events``, the dashboard's feed).

The faces import this package and the core, never each other; ``redispool.server``
assembles them. Importing ``redispool.web`` itself needs no web framework (the async
engine uses the hub).
"""
