-- claim_id: ready -> leased (one job, by id)
-- Leases exactly job ARGV[1] to a worker with a fresh fencing token, if it is ready now
-- (protocols that list ready jobs and let a worker pick one: the cueapi compat layer).
-- A paused queue hands out nothing; a malformed job (payload or max_attempts missing)
-- goes to dead instead of reaching a worker, as in claim.
-- KEYS[1] rp:{q}:ready      zset  ready jobs                       rw
-- KEYS[2] rp:{q}:leased     zset  leased jobs by expiry            w
-- KEYS[3] rp:{q}:marker     zset  wake-up marker for claimers       w
-- KEYS[4] rp:{q}:meta       hash  seq counter, paused flag          rw
-- KEYS[5] rp:{q}:counts     hash  lifetime totals                   w
-- KEYS[6] rp:{q}:dead       zset  dead jobs (malformed ones land here)  w
-- KEYS[7] rp:{q}:unique     hash  unique_key -> job id              rw
-- KEYS[8] rp:{q}:job:       prefix of job hashes                    rw
-- ARGV[1] id                job id
-- ARGV[2] worker_id         string
-- ARGV[3] lease_ms          lease of a job that has none of its own
-- Returns: { now_ms } when the job is not ready (or the queue is paused), else
--          { now_ms, token, attempt, max_attempts, lease_ms, payload }
local q = { ready = KEYS[1], leased = KEYS[2], marker = KEYS[3], meta = KEYS[4], counts = KEYS[5],
            dead = KEYS[6], unique = KEYS[7], jprefix = KEYS[8] }
local id, worker, lease_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])

local now = now_ms()
if redis.call('HEXISTS', q.meta, 'paused') == 1 then return { now } end
if redis.call('ZREM', q.ready, id) == 0 then return { now } end
local jkey = q.jprefix .. id
local f = redis.call('HMGET', jkey, 'p', 'm', 'l')
if not (f[1] and f[2]) then
  if redis.call('EXISTS', jkey) == 1 then
    push_error(jkey, 0, 'malformed job: payload or max_attempts missing', now)
    finish(q, id, 'dead', now)
    count('dead', 1)
    flush_counts(q, now)
  end
  set_marker(q)
  return { now }
end
local token = next_seq(q, 1)
local attempt = redis.call('HINCRBY', jkey, 'a', 1)
local lease = tonumber(f[3] or lease_ms)
redis.call('HSET', jkey, 's', 'leased', 't', token, 'w', worker, 'u', now)
redis.call('ZADD', q.leased, now + lease, id)
set_marker(q)
return { now, token, attempt, tonumber(f[2]), lease, f[1] }
