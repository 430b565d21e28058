"""The no-op worker app bin/bench runs as a real `redispool worker` process.

Its handler returns how long the job waited (now - payload["t"]) when the payload carries
an enqueue time, so the benchmark can read pickup latency from the results, and the
server time (ms) of the claim that leased the job when the payload asks (``"claim_ms"``:
bin/bench_limits.py).

``BENCH_HANDLER=incr``: the handler does one ``INCR`` on its own redis-py connection per
job instead, as a real handler that touches a store would (the peers' comparison table
in issue #21 uses that handler for every system).
"""
import os
import time

import redis

import redispool

pool = redispool.connect(os.environ.get("REDISPOOL_URL"), prefix=os.environ.get("REDISPOOL_PREFIX", "rp"))
worker = redispool.Worker(pool, queues=[os.environ.get("BENCH_QUEUE", "bench")])
INCR = os.environ.get("BENCH_HANDLER") == "incr"
store = redis.Redis.from_url(os.environ.get("REDISPOOL_URL") or "redis://127.0.0.1:6379") if INCR else None


@worker.process
def handle(job):
    if store is not None:
        store.incr("bench:handled")
        return None
    payload = job.payload
    if isinstance(payload, dict) and "t" in payload:
        return time.time() - payload["t"]
    if isinstance(payload, dict) and payload.get("claim_ms"):
        return round((job.lease_expires_at - job.lease) * 1000)
    return None
