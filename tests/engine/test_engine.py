"""Engine behaviour, run on every backend (memory:// and a real redis-server)."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import redis

import redispool
from redispool import InvalidQueueName, JobNotFound, LeaseLost, PayloadError


def claim_one(engine, queue="q", worker="w1", **kw):
    jobs = engine.claim(queue, worker, **kw)
    assert len(jobs) == 1, jobs
    return jobs[0]


# ---------------------------------------------------------------- lifecycle
def test_enqueue_claim_complete(engine):
    job_id = engine.enqueue("q", {"to": "a@example.com"}, max_attempts=5)
    info = engine.get("q", job_id)
    assert info.state == "ready" and info.payload == {"to": "a@example.com"}
    assert info.attempts == 0 and info.max_attempts == 5 and info.created_at > 1e9
    job = claim_one(engine)
    assert (job.id, job.queue, job.attempt, job.max_attempts, job.worker_id) == (job_id, "q", 1, 5, "w1")
    assert job.payload == {"to": "a@example.com"} and job.token
    assert job.lease == 30.0 and job.lease_expires_at > time.time() + 25
    info = engine.get("q", job_id)
    assert info.state == "leased" and info.worker_id == "w1" and info.lease_expires_at
    engine.complete(job, {"sent": True})
    info = engine.get("q", job_id)
    assert info.state == "done" and info.result == {"sent": True} and info.finished_at
    assert engine.stats("q")["done"] == 1
    assert engine.claim("q", "w1") == []


def test_get_unknown_job_is_none(engine):
    assert engine.get("q", "nope") is None


def test_payload_types_round_trip(engine):
    for payload in [None, 1, 2.5, "x", b"\x00\xff", [1, [2]], {"a": {"b": None}}]:
        engine.enqueue("q", payload)
        assert claim_one(engine).payload == payload


def test_priority_then_fifo(engine):
    low = [engine.enqueue("q", i, priority=-5) for i in range(3)]
    mid = [engine.enqueue("q", i) for i in range(3)]
    high = [engine.enqueue("q", i, priority=10) for i in range(3)]
    order = [j.id for j in engine.claim("q", "w", limit=9)]
    assert order == high + mid + low


def test_claim_limit_takes_a_batch(engine):
    ids = engine.enqueue_many("q", range(10))
    assert len(set(ids)) == 10
    jobs = engine.claim("q", "w", limit=4)
    assert [j.id for j in jobs] == ids[:4]
    assert len({j.token for j in jobs}) == 4
    assert engine.stats("q")["ready"] == 6 and engine.stats("q")["leased"] == 4


# ---------------------------------------------------------------- delays
def test_delay_schedules_and_claim_promotes_when_due(engine):
    job_id = engine.enqueue("q", 1, delay=0.15)
    assert engine.get("q", job_id).state == "scheduled"
    assert engine.get("q", job_id).run_at > time.time()
    assert engine.claim("q", "w") == []
    time.sleep(0.2)
    assert claim_one(engine).id == job_id


def test_run_at_datetime_and_seconds(engine):
    past = engine.enqueue("q", 1, run_at=time.time() - 10)
    assert engine.get("q", past).state == "ready"
    future = engine.enqueue("q", 2, run_at=datetime.now(timezone.utc) + timedelta(hours=1))
    info = engine.get("q", future)
    assert info.state == "scheduled" and abs(info.run_at - (time.time() + 3600)) < 5


def test_promote_moves_due_jobs(engine):
    engine.enqueue("q", 1, delay=0.05)
    engine.enqueue("q", 2, delay=3600)
    time.sleep(0.1)
    assert engine.promote("q") == 1
    assert engine.stats("q")["ready"] == 1 and engine.stats("q")["scheduled"] == 1


# ---------------------------------------------------------------- uniqueness
def test_unique_key_dedupes_until_finished(engine):
    first = engine.enqueue("q", 1, unique_key="report:7")
    assert engine.enqueue("q", 2, unique_key="report:7") == first
    assert engine.stats("q")["ready"] == 1
    engine.complete(claim_one(engine), None)
    second = engine.enqueue("q", 3, unique_key="report:7")
    assert second != first and engine.get("q", second).payload == 3


def test_custom_job_id_is_idempotent(engine):
    assert engine.enqueue("q", 1, job_id="order-1") == "order-1"
    assert engine.enqueue("q", 2, job_id="order-1") == "order-1"
    assert engine.get("q", "order-1").payload == 1
    assert engine.stats("q")["ready"] == 1


def test_custom_ids_cannot_collide_with_generated_ones(engine):
    with pytest.raises(ValueError):
        engine.enqueue("q", "custom", job_id="2")
    engine.enqueue("q", "custom", job_id="v2")
    ids = engine.enqueue_many("q", [1, 2, 3])
    assert len(set(ids)) == 3 and all(i.isdigit() for i in ids)


# ---------------------------------------------------------------- fencing
def test_stale_token_changes_nothing(engine):
    engine.enqueue("q", 1)
    job = claim_one(engine)
    stale = redispool.Job(**{**job.__dict__, "token": "999999"})
    for call in (lambda: engine.complete(stale), lambda: engine.fail(stale, "x"),
                 lambda: engine.heartbeat(stale), lambda: engine.release(stale)):
        with pytest.raises(LeaseLost):
            call()
    info = engine.get("q", job.id)
    assert info.state == "leased" and info.errors == [] and info.attempts == 1
    engine.complete(job)


def test_expired_lease_cannot_finish_and_is_swept(engine):
    engine.enqueue("q", 1, max_attempts=2)
    job = claim_one(engine, lease=0.05)
    time.sleep(0.1)
    with pytest.raises(LeaseLost):
        engine.complete(job)
    with pytest.raises(LeaseLost):
        engine.heartbeat(job)
    assert engine.sweep("q") == 1
    info = engine.get("q", job.id)
    assert info.state == "ready" and info.error == "lease expired"
    second = claim_one(engine, worker="w2", lease=0.05)
    assert second.attempt == 2 and second.token != job.token
    with pytest.raises(LeaseLost):  # the first worker's token is dead for good
        engine.complete(job)
    time.sleep(0.1)
    assert engine.sweep("q") == 1
    info = engine.get("q", job.id)
    assert info.state == "dead" and [e[0] for e in info.errors] == [2, 1]


def test_heartbeat_extends_lease(engine):
    engine.enqueue("q", 1)
    job = claim_one(engine, lease=0.2)
    for _ in range(3):
        time.sleep(0.1)
        expiry = engine.heartbeat(job)
        assert expiry > time.time() + 0.1
    time.sleep(0.1)
    engine.complete(job)
    assert engine.get("q", job.id).state == "done"


def test_heartbeat_with_explicit_lease(engine):
    engine.enqueue("q", 1)
    job = claim_one(engine, lease=1)
    assert engine.heartbeat(job, lease=600) > time.time() + 590


def test_job_lease_option_wins_over_claim_lease(engine):
    engine.enqueue("q", 1, lease=120)
    job = claim_one(engine, lease=5)
    assert job.lease == 120


# ---------------------------------------------------------------- failures
def test_fail_retries_with_backoff_then_dead(make_engine):
    engine = make_engine(backoff_base=0.05, backoff_cap=0.05)
    job_id = engine.enqueue("q", 1, max_attempts=2)
    job = claim_one(engine)
    before = time.time()
    assert engine.fail(job, ValueError("boom")) == "scheduled"
    after = time.time()
    info = engine.get("q", job_id)
    assert info.state == "scheduled" and info.error == "ValueError: boom"
    # equal jitter: 25-50 ms after the (Redis) time of the fail, ms rounding aside
    assert before + 0.023 <= info.run_at <= after + 0.052
    time.sleep(0.08)
    job = claim_one(engine)
    assert job.attempt == 2
    assert engine.fail(job, "again") == "dead"
    info = engine.get("q", job_id)
    assert info.state == "dead" and info.attempts == 2
    assert [(a, e) for a, e, _ in info.errors] == [(2, "again"), (1, "ValueError: boom")]


def test_backoff_grows_exponentially_with_cap(make_engine):
    engine = make_engine(backoff_base=10, backoff_cap=25)
    engine.enqueue("q", 1, max_attempts=10)
    waits = []
    for _ in range(3):
        job = claim_one(engine)
        before = time.time()
        engine.fail(job, "x")
        waits.append(engine.get("q", job.id).run_at - before)
        engine.client.zadd(engine.keys("q").scheduled, {job.id: 0})  # due now
    assert 5 - 0.1 <= waits[0] <= 10 + 0.1       # base, equal jitter
    assert 10 - 0.1 <= waits[1] <= 20 + 0.1      # 2 * base
    assert 12.5 - 0.1 <= waits[2] <= 25 + 0.1    # capped


def test_per_job_backoff(make_engine):
    engine = make_engine(backoff_base=1000)
    engine.enqueue("q", 1, backoff_base=0.01, backoff_cap=0.01)
    engine.fail(claim_one(engine), "x")
    time.sleep(0.05)
    assert claim_one(engine).attempt == 2


def test_fail_without_retry_and_explicit_delay(engine):
    engine.enqueue("q", 1, max_attempts=5)
    assert engine.fail(claim_one(engine), "fatal", retry=False) == "dead"
    engine.enqueue("q", 2, max_attempts=5)
    job = claim_one(engine)
    assert engine.fail(job, "later", delay=100) == "scheduled"
    assert engine.get("q", job.id).run_at > time.time() + 90


def test_errors_keep_last_ten_latest_first(make_engine):
    engine = make_engine(backoff_base=0.001, backoff_cap=0.001)
    job_id = engine.enqueue("q", 1, max_attempts=12)
    for attempt in range(1, 13):
        time.sleep(0.005)
        job = claim_one(engine)
        assert job.attempt == attempt
        engine.fail(job, f"error {attempt}")
    info = engine.get("q", job_id)
    assert info.state == "dead"
    assert [a for a, _, _ in info.errors] == list(range(12, 2, -1))
    assert info.errors[0][1] == "error 12" and info.error == "error 12"


def test_release_does_not_count_the_attempt(engine):
    engine.enqueue("q", 1)
    job = claim_one(engine)
    engine.release(job)
    assert engine.get("q", job.id).state == "ready"
    again = claim_one(engine)
    assert again.attempt == 1


# ---------------------------------------------------------------- batch ack
def test_ack_finishes_many_and_claims_next(engine):
    engine.enqueue_many("q", range(6))
    a, b, c = engine.claim("q", "w", limit=3)
    stale = redispool.Job(**{**c.__dict__, "token": "1"})
    result = engine.ack("q", completed=[(a, "ra"), (stale, None)], failed=[(b, "err", False)],
                        worker_id="w", limit=2)
    assert result.completed == [True, False]
    assert result.failed == ["dead"]
    assert [j.payload for j in result.jobs] == [3, 4]
    assert engine.get("q", a.id).result == "ra"
    assert engine.get("q", c.id).state == "leased"  # the stale item spoiled nothing


def test_ack_without_claim(engine):
    engine.enqueue("q", 1)
    job = claim_one(engine)
    result = engine.ack("q", completed=[(job, 1)])
    assert result.completed == [True] and result.jobs == []


# ---------------------------------------------------------------- admin
def test_cancel(engine):
    ready = engine.enqueue("q", 1)
    scheduled = engine.enqueue("q", 2, delay=100)
    assert engine.cancel("q", ready) and engine.cancel("q", scheduled)
    assert engine.get("q", ready).state == "cancelled"
    assert engine.cancel("q", ready) is False
    leased_id = engine.enqueue("q", 3)
    job = claim_one(engine)
    assert job.id == leased_id and engine.cancel("q", leased_id)
    with pytest.raises(LeaseLost):
        engine.complete(job)
    with pytest.raises(JobNotFound):
        engine.cancel("q", "missing")
    assert engine.stats("q")["cancelled"] == 3


def test_cancel_frees_unique_key(engine):
    first = engine.enqueue("q", 1, unique_key="k")
    engine.cancel("q", first)
    assert engine.enqueue("q", 1, unique_key="k") != first


def test_pause_and_resume(engine):
    engine.enqueue("q", 1)
    assert engine.pause("q") is True and engine.pause("q") is False
    assert engine.stats("q")["paused"] is True
    assert engine.claim("q", "w") == []
    assert engine.claim("q", "w", block=0.1) == []
    assert engine.resume("q") is True
    assert len(engine.claim("q", "w")) == 1


def test_replay_dead(engine):
    ids = []
    for i in range(3):
        engine.enqueue("q", i, max_attempts=1)
        job = claim_one(engine)
        engine.fail(job, "x")
        ids.append(job.id)
    assert engine.replay_dead("q", [ids[0], "unknown"]) == 1
    info = engine.get("q", ids[0])
    assert info.state == "ready" and info.attempts == 0 and info.error == "x"
    assert engine.replay_dead("q") == 2
    assert engine.stats("q")["dead"] == 0 and engine.stats("q")["ready"] == 3


def test_purge(engine):
    engine.enqueue_many("q", range(5))
    engine.enqueue("q", 1, unique_key="u")
    assert engine.purge("q", "ready") == 6
    assert engine.stats("q")["ready"] == 0
    assert engine.enqueue("q", 1, unique_key="u")  # freed
    with pytest.raises(ValueError):
        engine.purge("q", "nonsense")


def test_purge_more_than_one_batch(engine):
    engine.enqueue_many("q", range(2500))
    assert engine.purge("q", "ready") == 2500
    assert engine.client.dbsize() < 20 or engine.stats("q")["ready"] == 0


def test_stats_and_latency(engine):
    engine.enqueue("q", 1, priority=5)
    time.sleep(0.1)
    engine.enqueue("q", 2, priority=0)
    engine.enqueue("q", 3, delay=100)
    stats = engine.stats("q")
    assert stats["ready"] == 2 and stats["scheduled"] == 1 and stats["paused"] is False
    assert 0.1 <= stats["latency"] < 5  # the older job, though not first in line
    assert stats["totals"]["enqueued"] == 3
    assert set(stats) >= {"scheduled", "ready", "leased", "done", "dead", "cancelled", "paused", "latency"}


def test_stats_of_empty_queue(engine):
    stats = engine.stats("nothing")
    assert stats["ready"] == 0 and stats["latency"] == 0


def test_queues_and_jobs_listing(engine):
    assert engine.queues() == []
    ids = engine.enqueue_many("b", range(5))
    engine.enqueue("a", 1)
    assert engine.queues() == ["a", "b"]
    listed = engine.jobs("b", "ready", limit=3)
    assert [j.id for j in listed] == ids[:3]
    assert [j.id for j in engine.jobs("b", "ready", limit=3, offset=3)] == ids[3:]
    for job in engine.claim("b", "w", limit=5):
        engine.complete(job)
    assert [j.id for j in engine.jobs("b", "done")][0] == ids[-1] or len(engine.jobs("b", "done")) == 5


# ---------------------------------------------------------------- retention
def test_done_retention_by_count(make_engine):
    engine = make_engine(done_max=3)
    engine.enqueue_many("q", range(10))
    for job in engine.claim("q", "w", limit=10):
        engine.complete(job)
    assert engine.stats("q")["done"] == 3
    kept = {j.id for j in engine.jobs("q", "done")}
    assert len(kept) == 3
    assert engine.client.exists(engine.keys("q").job(sorted(kept, key=int)[0]))
    gone = [i for i in map(str, range(1, 11)) if i not in kept]
    assert all(engine.get("q", i) is None for i in gone)


def test_done_retention_by_age_on_sweep(make_engine):
    engine = make_engine(done_ttl=0.05)
    engine.enqueue("q", 1)
    job = claim_one(engine)
    engine.complete(job)
    time.sleep(0.1)
    engine.sweep("q")
    assert engine.get("q", job.id) is None and engine.stats("q")["done"] == 0


def test_zero_retention_deletes_at_once(make_engine):
    engine = make_engine(done_max=0)
    engine.enqueue("q", 1)
    job = claim_one(engine)
    engine.complete(job)
    assert engine.get("q", job.id) is None


def test_dead_retention(make_engine):
    engine = make_engine(dead_max=1)
    for i in range(3):
        engine.enqueue("q", i, max_attempts=1)
        engine.fail(claim_one(engine), "x")
    assert engine.stats("q")["dead"] == 1


# ---------------------------------------------------------------- blocking claim
def test_blocking_claim_wakes_on_enqueue(engine):
    got = []
    t = threading.Thread(target=lambda: got.extend(engine.claim("q", "w", block=5)))
    t.start()
    time.sleep(0.2)
    start = time.monotonic()
    engine.enqueue("q", "wake")
    t.join(5)
    assert [j.payload for j in got] == ["wake"]
    assert time.monotonic() - start < 2  # woken, not timed out


def test_blocking_claim_times_out_empty(engine):
    start = time.monotonic()
    assert engine.claim("q", "w", block=0.2) == []
    assert 0.15 < time.monotonic() - start < 3


def test_blocking_claim_wakes_for_delayed_job(engine):
    engine.enqueue("q", "later", delay=0.3)
    start = time.monotonic()
    jobs = engine.claim("q", "w", block=5)
    assert [j.payload for j in jobs] == ["later"]
    assert 0.25 < time.monotonic() - start < 3


def test_blocking_claim_sees_new_earlier_delayed_job(engine):
    engine.enqueue("q", "far", delay=60)
    got = []
    t = threading.Thread(target=lambda: got.extend(engine.claim("q", "w", block=5)))
    t.start()
    time.sleep(0.2)
    engine.enqueue("q", "soon", delay=0.2)
    t.join(5)
    assert [j.payload for j in got] == ["soon"]


# ---------------------------------------------------------------- bad input
def test_bad_input_raises_typed_errors_and_writes_nothing(engine):
    bad_calls = [
        (InvalidQueueName, lambda: engine.enqueue("bad queue", 1)),
        (InvalidQueueName, lambda: engine.enqueue("", 1)),
        (InvalidQueueName, lambda: engine.enqueue("x" * 129, 1)),
        (PayloadError, lambda: engine.enqueue("q", object())),
        (PayloadError, lambda: engine.enqueue_many("q", [1, object()])),
        (redispool.InvalidOption, lambda: engine.enqueue("q", 1, lease=0)),
        (redispool.InvalidOption, lambda: engine.enqueue("q", 1, lease=43200.5)),
        (redispool.InvalidOption, lambda: engine.enqueue("q", 1, lease=-1)),
        (redispool.InvalidOption, lambda: engine.enqueue("q", 1, priority=1001)),
        (redispool.InvalidOption, lambda: engine.enqueue("q", 1, priority=1.5)),
        (redispool.InvalidOption, lambda: engine.enqueue("q", 1, max_attempts=0)),
        (redispool.InvalidOption, lambda: engine.enqueue("q", 1, delay=-1)),
        (redispool.InvalidOption, lambda: engine.enqueue("q", 1, delay=1, run_at=5)),
        (redispool.InvalidOption, lambda: engine.enqueue("q", 1, job_id="has space")),
        (redispool.InvalidOption, lambda: engine.claim("q", "w", lease=50000)),
        (redispool.InvalidOption, lambda: engine.claim("q", "w", limit=0)),
        (TypeError, lambda: engine.enqueue("q", 1, prority=3)),
    ]
    for exc, call in bad_calls:
        with pytest.raises(exc):
            call()
    assert issubclass(PayloadError, ValueError) and issubclass(InvalidQueueName, ValueError)
    assert issubclass(redispool.InvalidOption, ValueError)
    assert engine.queues() == []
    assert engine.client.keys(f"{engine.prefix}:*") == []


def test_lease_bounds_accepted(engine):
    engine.enqueue("q", 1, lease=43200)
    engine.enqueue("q", 1, lease=0.001)
    assert engine.stats("q")["ready"] == 2


# ---------------------------------------------------------------- robustness
def test_scripts_reload_after_script_flush(engine):
    engine.enqueue("q", 1)
    engine.client.script_flush()
    job = claim_one(engine)
    engine.client.script_flush()
    engine.complete(job)
    assert engine.stats("q")["done"] == 1


def test_scripts_are_one_function_library_loaded_again_after_function_flush(engine):
    """connect() loads the scripts as one Redis Functions library (on every backend: Redis
    7, a cluster's every primary, fakeredis); after FUNCTION FLUSH (or a restart without
    the data, a failover to a primary without it) a call loads it again and goes on."""
    library = engine.scripts.library
    assert engine.scripts.functions == library.functions
    listed = engine.client.function_list(library="redispool_*")
    assert library.name.encode() in str(listed).encode()
    engine.enqueue("q", 1)
    engine.client.function_flush()
    job = claim_one(engine)
    engine.client.function_flush()
    engine.complete(job)
    engine.client.function_flush()
    assert engine.stats("q")["done"] == 1   # a read-only script (FCALL_RO) too
    assert engine.scripts.functions == library.functions, "still called as functions"


def test_a_second_engine_finds_the_library_loaded(make_engine):
    first = make_engine()
    first.enqueue("q", 1)
    second = make_engine()   # FUNCTION LOAD: "already exists" is the library it needs
    assert second.scripts.functions == first.scripts.functions
    assert claim_one(second).payload == 1


class _NoFunctions:
    """A client whose server refuses FUNCTION (Redis < 7, a proxy), else the engine's."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        return getattr(self._client, name)

    def execute_command(self, *args, **options):
        if str(args[0]).upper() in ("FUNCTION", "FCALL", "FCALL_RO"):
            raise redis.ResponseError(f"unknown command '{args[0]}', with args beginning with: ")
        return self._client.execute_command(*args, **options)


def test_without_functions_the_scripts_run_by_evalsha(engine):
    plain = redispool.Engine(_NoFunctions(engine.client), url=engine.url, prefix=engine.prefix)
    plain.load_scripts()
    assert plain.scripts.functions is None
    job_id = plain.enqueue("q", 1)
    job = claim_one(plain)
    if hasattr(engine.client, "script_flush"):
        engine.client.script_flush()
    plain.complete(job)
    assert plain.get("q", job_id).state == "done"


def test_undecodable_payload_goes_dead(engine):
    job_id = engine.enqueue("q", 1)
    engine.client.hset(engine.keys("q").job(job_id), "p", b"\xc1")  # never valid msgpack
    assert engine.claim("q", "w") == []
    info = engine.get("q", job_id)
    assert info.state == "dead" and "PayloadError" in info.error


def test_job_hash_missing_fields_goes_dead(engine):
    job_id = engine.enqueue("q", 1)
    engine.client.hdel(engine.keys("q").job(job_id), "p")
    assert engine.claim("q", "w") == []
    info = engine.get("q", job_id)
    assert info.state == "dead" and "malformed" in info.error


def test_dangling_id_without_hash_is_dropped(engine):
    engine.client.zadd(engine.keys("q").ready, {"ghost": 0})
    real = engine.enqueue("q", 1)
    assert [j.id for j in engine.claim("q", "w", limit=5)] == [real]


def test_unreachable_redis_masks_password():
    with pytest.raises(redispool.ConnectionFailed) as info:
        redispool.connect("redis://:hunter2@127.0.0.1:1/0")
    assert "hunter2" not in str(info.value) and "***" in str(info.value)
    assert isinstance(info.value, ConnectionError)


def test_unknown_scheme():
    with pytest.raises(redispool.ConnectionFailed):
        redispool.connect("mongodb://localhost")


def test_ack_reports_wait_until_next_scheduled_job(engine):
    engine.enqueue("q", 1, delay=30)
    result = engine.ack("q", worker_id="w", limit=5)
    assert result.jobs == [] and 25 < result.wait <= 30
    engine.pause("q")
    assert engine.ack("q", worker_id="w", limit=5).wait is None


def test_ping(engine):
    assert engine.ping() is True


def test_enqueue_specs_gives_each_job_its_own_options(engine):
    def spec(payload, **o):
        base = dict(priority=0, delay=None, run_at=None, max_attempts=3, lease=None, unique_key=None,
                    job_id=None, backoff_base=None, backoff_cap=None)
        return engine.job_spec(payload, **{**base, **o})
    out = engine.enqueue_specs("q", [spec("a", priority=5), spec("b", delay=60), spec("c", job_id="c-1"),
                                     spec("d", unique_key="u"), spec("e", unique_key="u")])
    assert [created for _, created in out] == [True, True, True, True, False]
    assert out[2][0] == "c-1" and out[4][0] == out[3][0]
    assert engine.get("q", out[0][0]).priority == 5
    assert engine.get("q", out[1][0]).state == "scheduled"
    assert [j.id for j in engine.claim("q", "w", limit=5)] == [out[0][0], "c-1", out[3][0]]


def test_a_damaged_number_field_never_loses_the_batch(engine):
    """A job whose attempts field is not a number goes dead; the jobs claimed with it are
    leased as usual (a script error mid-claim would have lost them), and get() shows it."""
    ids = engine.enqueue_many("q", range(4))
    k = engine.keys("q")
    engine.client.hset(k.job(ids[1]), "a", "many")
    engine.client.hset(k.job(ids[2]), "e", "{not json")
    jobs = engine.claim("q", "w", limit=4)
    assert [j.id for j in jobs] == [ids[0], ids[2], ids[3]]
    assert engine.fail(jobs[1], "boom", delay=0) == "scheduled", "a broken error list starts over"
    info = engine.get("q", ids[1])
    assert info.state == "dead" and "malformed job: attempts not a whole number" in info.error and info.attempts == 0
    assert engine.stats("q")["leased"] == 2
