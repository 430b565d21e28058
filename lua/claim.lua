-- claim: ready -> leased
-- Leases up to ARGV[2] ready jobs (highest priority first, FIFO within) to a worker, each
-- with a fresh fencing token. Due scheduled jobs are promoted first. A paused queue
-- hands out nothing, and the queue's limits (rate, concurrency) fewer or none. A job past
-- its expiry is cancelled instead of leased, and the next one taken (lib's lease_job).
-- At maxmemory: runs (its first write is one Redis allows there; scripts.py)
-- KEYS[1] rp:{q}:ready      zset  ready jobs                       rw
-- KEYS[2] rp:{q}:leased     zset  leased jobs by expiry            w
-- KEYS[3] rp:{q}:scheduled  zset  delayed jobs by run time          rw
-- KEYS[4] rp:{q}:marker     zset  wake-up marker for claimers       w
-- KEYS[5] rp:{q}:meta       hash  seq counter, paused flag          rw
-- KEYS[6] rp:{q}:unique     hash  unique_key -> job id              rw
-- KEYS[7] rp:{q}:counts     hash  lifetime totals                   w
-- KEYS[8] rp:{q}:dead       zset  dead jobs (malformed ones land here)  w
-- KEYS[9] rp:{q}:job:       prefix of job hashes                    rw
-- KEYS[10] rp:{q}:events   stream the queue's event log         w
-- KEYS[11] rp:{q}:config   hash  the queue's limits (rate, per_ms, concurrency)  r
-- KEYS[12] rp:{q}:ratelog  list  claim times (ms) in the rate window, newest first  rw
-- KEYS[13] rp:{q}:cancelled  zset  jobs cancelled for their expiry (lib's lease_job)  w
-- KEYS[14] rp:{q}:waiting    zset  their children: jobs waiting for parents  rw
-- KEYS[15] rp:{q}:children:  prefix of parents' child sets           rw
-- KEYS[16] rp:{q}:outbox     zset  their outcomes for children in other queues  w
-- ARGV[1] worker_id         string
-- ARGV[2] limit             max jobs to lease
-- ARGV[3] lease_ms          lease of jobs that have none of their own
-- ARGV[4] events_max        cap of the event log rp:{q}:events (0 = no events)
-- Returns: flat array: wait_ms, now_ms, scheduler_at, sweeper_at, then id, token, attempt,
--          max_attempts, lease_ms, timeout_ms (0 = none of its own), payload per job;
--          wait_ms, when nothing was claimed, is the time until the rate window allows a
--          claim (when the rate held it back), else until the next scheduled job (-1: none
--          scheduled, paused, or jobs ready behind the concurrency cap: the marker wakes
--          claimers);
--          scheduler_at / sweeper_at are the ms for ZADD rp:due:<daemon> LT (-1 = none;
--          see flush_plan), as in ack's reply
local q = { ready = KEYS[1], leased = KEYS[2], scheduled = KEYS[3], marker = KEYS[4],
            meta = KEYS[5], unique = KEYS[6], counts = KEYS[7], dead = KEYS[8], jprefix = KEYS[9], events = KEYS[10],
            config = KEYS[11], ratelog = KEYS[12], events_max = tonumber(ARGV[4]), defer_trim = true,
            cancelled = KEYS[13], waiting = KEYS[14], children = KEYS[15], outbox = KEYS[16] }
local worker, limit, lease_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])

local now = now_ms()
local out = { -1, now, -1, -1 }
local claimed, wait_ms = claim_jobs(q, worker, limit, lease_ms, now, out)
if claimed == 0 then out[1] = wait_ms end
flush_counts(q, now)
out[3], out[4] = flush_plan(q)
return out
