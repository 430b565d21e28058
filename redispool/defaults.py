"""Every default redispool uses, in one place; units are in the names."""

PREFIX = "rp"
URL_ENV = "REDISPOOL_URL"
PREFIX_ENV = "REDISPOOL_PREFIX"
URL = "redis://localhost:6379/0"

LEASE_S = 30.0
LEASE_MAX_S = 43_200.0           # 12 hours
MAX_ATTEMPTS = 3
PRIORITY_MAX = 1000              # priorities are integers in [-1000, 1000]
TIMEOUT_MAX_S = 604_800.0        # a job's timeout (longest one attempt may run): at most 7 days
PROGRESS_MESSAGE_MAX = 500       # characters of a progress message (job.progress)

BACKOFF_BASE_S = 1.0             # retry n waits about base * 2**(n-1), jittered
BACKOFF_CAP_S = 3600.0

DONE_TTL_S = 3600.0              # finished jobs are kept this long ...
DONE_MAX = 10_000                # ... and at most this many per queue
DEAD_TTL_S = 7 * 86_400.0
DEAD_MAX = 100_000
EVENTS_MAX = 10_000              # each queue's event log keeps about this many events (0: none)

ERRORS_KEPT = 10                 # errors of the last 10 attempts per job
ERROR_MAX_CHARS = 4096
BATCH_MAX = 1000                 # jobs one script call moves at most (claim, promote, sweep, purge)
WORKER_TIMEOUT_S = 60.0
DURABLE_TIMEOUT_S = 1.0          # durable=True: how long a write waits for a replica's ack

CATCH_UP_MAX = 100               # misfire="catch_up" fires at most the latest 100 missed times
CUE_RUNS_MAX = 100               # runs a cue's run log keeps (cue_runs)
CUES_DUE_MAX = 100               # cues one scheduler step fires per queue at most
SCHEDULER_INTERVAL_S = 1.0

# The CLI's process-wide retention defaults (worker, scheduler, sweeper, serve), for queues
# without stored retention (Engine.set_retention): options --done-ttl ... or these variables.
DONE_TTL_ENV = "REDISPOOL_DONE_TTL"
DONE_MAX_ENV = "REDISPOOL_DONE_MAX"
DEAD_TTL_ENV = "REDISPOOL_DEAD_TTL"
DEAD_MAX_ENV = "REDISPOOL_DEAD_MAX"
EVENTS_MAX_ENV = "REDISPOOL_EVENTS_MAX"   # connect()'s events_max when the caller gives none
