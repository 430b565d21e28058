-- claim_id: ready -> leased (one job, by id)
-- Leases exactly job ARGV[1] to a worker with a fresh fencing token, if it is ready now
-- (protocols that list ready jobs and let a worker pick one: the cueapi compat layer).
-- A paused queue hands out nothing, nor does a queue whose limits (rate, concurrency)
-- allow no claim now; a damaged job goes to dead instead of reaching a worker: the lease
-- step (lib's lease_job) and the limits are claim's own.
-- At maxmemory: runs (its first write is one Redis allows there; scripts.py)
-- KEYS[1] rp:{q}:ready      zset  ready jobs                       rw
-- KEYS[2] rp:{q}:leased     zset  leased jobs by expiry            w
-- KEYS[3] rp:{q}:marker     zset  wake-up marker for claimers       w
-- KEYS[4] rp:{q}:meta       hash  seq counter, paused flag          rw
-- KEYS[5] rp:{q}:counts     hash  lifetime totals                   w
-- KEYS[6] rp:{q}:dead       zset  dead jobs (malformed ones land here)  w
-- KEYS[7] rp:{q}:unique     hash  unique_key -> job id              rw
-- KEYS[8] rp:{q}:job:       prefix of job hashes                    rw
-- KEYS[9] rp:{q}:events    stream the queue's event log         w
-- KEYS[10] rp:{q}:config   hash  the queue's limits (rate, per_ms, concurrency)  r
-- KEYS[11] rp:{q}:ratelog  list  claim times (ms) in the rate window, newest first  rw
-- KEYS[12] rp:{q}:cancelled  zset  a job cancelled for its expiry (lib's lease_job)  w
-- KEYS[13] rp:{q}:waiting    zset  its children: jobs waiting for parents  rw
-- KEYS[14] rp:{q}:children:  prefix of parents' child sets           rw
-- KEYS[15] rp:{q}:outbox     zset  its outcome for children in other queues  w
-- KEYS[16] rp:{q}:scheduled  zset  its children released with a delay  w
-- ARGV[1] id                job id
-- ARGV[2] worker_id         string
-- ARGV[3] lease_ms          lease of a job that has none of its own
-- ARGV[4] events_max        cap of the event log rp:{q}:events (0 = no events)
-- Returns: flat array as claim's: wait_ms (-1, or when the rate held the claim back the
--          ms until its window allows one), now_ms, scheduler_at, sweeper_at (see claim),
--          then id, token, attempt, max_attempts, lease_ms, timeout_ms, payload when the
--          job was leased (nothing more when it is not ready, the queue is paused, its
--          limits allow no claim now, the job was damaged and went to dead, or it was past
--          its expiry and was cancelled)
local q = { ready = KEYS[1], leased = KEYS[2], marker = KEYS[3], meta = KEYS[4], counts = KEYS[5],
            dead = KEYS[6], unique = KEYS[7], jprefix = KEYS[8], events = KEYS[9],
            config = KEYS[10], ratelog = KEYS[11], events_max = tonumber(ARGV[4]),
            cancelled = KEYS[12], waiting = KEYS[13], children = KEYS[14], outbox = KEYS[15], scheduled = KEYS[16] }
local id, worker, lease_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])

local now = now_ms()
local out = { -1, now, -1, -1 }
if redis.call('HEXISTS', q.meta, 'paused') == 1 then return out end
if not redis.call('ZSCORE', q.ready, id) then return out end
local lim = limits(q)
local allowed, rate_wait = allowance(q, lim, 1, now)
if allowed == 0 then
  out[1] = rate_wait
  return out
end
redis.call('ZREM', q.ready, id)
local token = next_seq(q, 1)
local attempt, max_attempts, lease, timeout_ms, payload = lease_job(q, id, worker, lease_ms, token, now)
if attempt then
  out = { -1, now, -1, -1, id, token, attempt, max_attempts, lease, timeout_ms, payload }
  if lim.rate then note_claims(q, 1, now) end
end
set_marker(q, capped(q, lim))
flush_counts(q, now)
out[3], out[4] = flush_plan(q)
return out
