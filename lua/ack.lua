-- ack: leased -> done | scheduled | dead, then ready -> leased
-- Finish-and-fetch-next for batching workers: completes and fails many leased jobs (each
-- only if its token still holds a live lease) and, when limit > 0, leases the next batch
-- in the same call, so a busy worker needs about one round trip per batch. Finishing jobs
-- under the queue's concurrency cap wakes a blocked claimer (rearm); the next batch obeys
-- the queue's limits as claim does.
-- Durable: yes (with durable writes on, the reply waits for a replica; scripts.py)
-- At maxmemory: runs (its first write is one Redis allows there; scripts.py)
-- KEYS[1] rp:{q}:ready      zset  ready jobs                       rw
-- KEYS[2] rp:{q}:leased     zset  leased jobs by expiry            rw
-- KEYS[3] rp:{q}:scheduled  zset  delayed jobs by run time          rw
-- KEYS[4] rp:{q}:done       zset  done jobs by finish time         rw
-- KEYS[5] rp:{q}:dead       zset  dead jobs by finish time         rw
-- KEYS[6] rp:{q}:marker     zset  wake-up marker for claimers       w
-- KEYS[7] rp:{q}:meta       hash  seq counter, paused flag          rw
-- KEYS[8] rp:{q}:unique     hash  unique_key -> job id              rw
-- KEYS[9] rp:{q}:counts     hash  lifetime totals                   w
-- KEYS[10] rp:{q}:job:      prefix of job hashes                    rw
-- KEYS[11] rp:{q}:config    hash  the queue's stored retention (wins over ARGV) and limits  r
-- KEYS[12] rp:{q}:minutes   hash  jobs done / failed per minute     w
-- KEYS[13] rp:{q}:events   stream the queue's event log         w
-- KEYS[14] rp:{q}:waiting    zset  jobs waiting for parents          rw
-- KEYS[15] rp:{q}:cancelled  zset  cancelled jobs (children of failed parents)  w
-- KEYS[16] rp:{q}:children:  prefix of parents' child sets           rw
-- KEYS[17] rp:{q}:outbox     zset  parents' outcomes for children in other queues  w
-- KEYS[18] rp:{q}:ratelog  list  claim times (ms) in the rate window, newest first  rw
-- ARGV[1] done_ttl_ms       keep done jobs this long (default)
-- ARGV[2] done_max          keep at most this many done jobs (default)
-- ARGV[3] dead_ttl_ms       keep dead jobs this long (default)
-- ARGV[4] dead_max          keep at most this many dead jobs (default)
-- ARGV[5] backoff_base_ms   engine default backoff base
-- ARGV[6] backoff_cap_ms    engine default backoff cap
-- ARGV[7] seed              random seed for the jitter
-- ARGV[8] worker_id         claimer of the next batch
-- ARGV[9] limit             max jobs to lease next (0 = claim nothing)
-- ARGV[10] lease_ms         lease of jobs that have none of their own
-- ARGV[11] events_max       cap of the event log rp:{q}:events (0 = no events)
-- ARGV[12] nc               number of completions
-- ARGV[13..] per completion: id, token, result; then nf, then per failure: id, token,
--           error, retry (1/0), delay_ms (-1 = backoff)
-- Returns: flat array: one result per completion (1 done, 0 lease lost), one per failure
--          (new state or 0), then wait_ms (as claim's), now_ms, scheduler_at, sweeper_at
--          (ms for ZADD rp:due:<daemon> LT, -1 = none; see flush_plan) and the claimed
--          jobs as claim returns them; a scheduler_at equal to now_ms may mean entries in
--          rp:{q}:outbox for children in other queues (the caller drains it)
local q = { waiting = KEYS[14], cancelled = KEYS[15], children = KEYS[16], outbox = KEYS[17],
            ready = KEYS[1], leased = KEYS[2], scheduled = KEYS[3], done = KEYS[4], dead = KEYS[5],
            marker = KEYS[6], meta = KEYS[7], unique = KEYS[8], counts = KEYS[9], jprefix = KEYS[10],
            config = KEYS[11], minutes = KEYS[12], events = KEYS[13], ratelog = KEYS[18],
            events_max = tonumber(ARGV[11]), defer_trim = true }
local r = retention(q, tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
local done_ttl_ms, done_max = r.done_ttl_ms, r.done_max
local dead_ttl_ms, dead_max = r.dead_ttl_ms, r.dead_max
local base_ms, cap_ms = tonumber(ARGV[5]), tonumber(ARGV[6])
math.randomseed(tonumber(ARGV[7]))
local worker, limit, lease_ms = ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10])
local nc = tonumber(ARGV[12])

local now = now_ms()
local lim = r.lim   -- read with the retention
local leased_before = lim.concurrency and redis.call('ZCARD', q.leased)
local out = {}
complete_listed(q, ARGV, 13, nc, now, r, out)
local fb = 13 + nc * 3
local nf = tonumber(ARGV[fb])
fail_listed(q, ARGV, fb + 1, nf, base_ms, cap_ms, now, out)
if nc > 0 then trim(q, q.done, done_ttl_ms, done_max, now, 2 * nc + 10) end
if nf > 0 then trim(q, q.dead, dead_ttl_ms, dead_max, now, 2 * nf + 10) end
local wait_at = #out + 1
out[wait_at] = -1
out[wait_at + 1] = now
out[wait_at + 2] = -1
out[wait_at + 3] = -1
rearm(q, lim, leased_before)
if limit > 0 then
  local claimed, wait_ms = claim_jobs(q, worker, limit, lease_ms, now, out, lim)
  if claimed == 0 then out[wait_at] = wait_ms end
end
flush_counts(q, now)
out[wait_at + 2], out[wait_at + 3] = flush_plan(q)
return out
