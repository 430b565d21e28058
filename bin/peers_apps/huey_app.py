"""huey for bin/peers: the task (one ``INCR bench:handled`` on its own redis-py connection)
that `huey_consumer huey_app.huey` runs, and the producer's enqueue call (calling the task).
huey has no bulk enqueue."""
import os

import redis
from huey import RedisHuey

huey = RedisHuey("peers", url=os.environ["PEERS_URL"])
store = redis.Redis.from_url(os.environ["PEERS_URL"])


@huey.task()
def handle(n: int) -> None:
    store.incr("bench:handled")


def enqueue(n: int) -> None:
    handle(n)


enqueue_many = None
