"""redispool's enqueue calls for bin/peers' producer process.

Its worker is bin/bench_app.py run by `redispool worker` with ``BENCH_HANDLER=incr``: one
``INCR bench:handled`` per job on the handler's own redis-py connection.
"""
import os

import redispool

QUEUE = "peers"
engine = redispool.connect(os.environ["PEERS_URL"])


def enqueue(n: int) -> None:
    engine.enqueue(QUEUE, {"n": n})


def enqueue_many(ns: range) -> None:
    engine.enqueue_many(QUEUE, [{"n": n} for n in ns])
