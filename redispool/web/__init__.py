"""The web kit under every face of ``redispool serve`` (``/v1``, ``/compat/*``, the
dashboard): what each of them would otherwise write again.

- ``auth``: tokens, roles, the bearer header and the dashboard's cookie;
- ``body``: reading a JSON body within the size limit, field checks, JSON out;
- ``endpoint``: one route wrapper driven by a per-protocol ``Dialect`` (error table);
- ``workers``: the registry bookkeeping of HTTP workers (what each holds, in Redis);
- ``access``, ``guard``, ``outage``, ``metrics``: the access log and request metrics,
  the browser guard, and what a client is told when Redis is in trouble;
- ``hub``: one blocked connection per queue for every waiting claim.

The faces import this package and the core, never each other; ``redispool.server``
assembles them. Importing ``redispool.web`` itself needs no web framework (the async
engine uses the hub).
"""
