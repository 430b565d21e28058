"""dramatiq for bin/peers: the actor (one ``INCR bench:handled`` on its own redis-py
connection) that `dramatiq dramatiq_app` runs, and the producer's enqueue call
(``actor.send``). dramatiq has no bulk enqueue (a group sends its messages one by one)."""
import os

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

dramatiq.set_broker(RedisBroker(url=os.environ["PEERS_URL"]))
store = redis.Redis.from_url(os.environ["PEERS_URL"])


@dramatiq.actor
def handle(n: int) -> None:
    store.incr("bench:handled")


def enqueue(n: int) -> None:
    handle.send(n)


enqueue_many = None
