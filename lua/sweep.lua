-- sweep: leased (expired) -> ready | dead; trims finished jobs
-- Requeues jobs whose lease expired, counting the expiry as a failed attempt with error
-- "lease expired" (dead when it was the last attempt); with worker_id set, also takes
-- back the live leases that worker holds (its registration expired). Then trims done,
-- dead and cancelled to their retention, so idle queues shrink too: the queue's stored
-- retention (rp:{q}:config) wins over the caller's defaults. Jobs whose expiry passed
-- before they were leased (rp:{q}:expiring) are cancelled (lib's expire_unclaimed).
-- KEYS[1] rp:{q}:leased     zset  leased jobs by expiry            rw
-- KEYS[2] rp:{q}:ready      zset  ready jobs                       w
-- KEYS[3] rp:{q}:done       zset  done jobs by finish time         rw
-- KEYS[4] rp:{q}:dead       zset  dead jobs by finish time         rw
-- KEYS[5] rp:{q}:cancelled  zset  cancelled jobs by cancel time    rw
-- KEYS[6] rp:{q}:marker     zset  wake-up marker for claimers       w
-- KEYS[7] rp:{q}:meta       hash  seq counter, paused flag          rw
-- KEYS[8] rp:{q}:unique     hash  unique_key -> job id              rw
-- KEYS[9] rp:{q}:counts     hash  lifetime totals                   w
-- KEYS[10] rp:{q}:job:      prefix of job hashes                    rw
-- KEYS[11] rp:{q}:config    hash  the queue's stored retention and limits  r
-- KEYS[12] rp:{q}:minutes   hash  jobs done / failed per minute     w
-- KEYS[13] rp:{q}:events   stream the queue's event log         w
-- KEYS[14] rp:{q}:waiting    zset  jobs waiting for parents          rw
-- KEYS[15] rp:{q}:scheduled  zset  delayed jobs (released children) w
-- KEYS[16] rp:{q}:children:  prefix of parents' child sets           rw
-- KEYS[17] rp:{q}:outbox     zset  parents' outcomes for children in other queues  w
-- KEYS[18] rp:{q}:expiring   zset  jobs with an expiry, by it         rw
-- ARGV[1] budget            max jobs to requeue in this call
-- ARGV[2] done_ttl_ms       retention of done and cancelled jobs (default)
-- ARGV[3] done_max          (default)
-- ARGV[4] dead_ttl_ms       retention of dead jobs (default)
-- ARGV[5] dead_max          (default)
-- ARGV[6] worker_id         '' = expired leases only; else every lease of that worker
-- ARGV[7] plan              1: store the sweeper's next visit (earliest lease expiry or
--                           retention trim) in meta sweeper_at (HDEL when there is none)
-- ARGV[8] events_max        cap of the event log rp:{q}:events (0 = no events)
-- Returns: { moved, next_ms, scheduler_at, outboxed }: jobs moved out of leased, with plan
--          the next visit (-1 = none), then see complete (children of jobs gone dead)
local q = { waiting = KEYS[14], scheduled = KEYS[15], children = KEYS[16], outbox = KEYS[17],
            leased = KEYS[1], ready = KEYS[2], done = KEYS[3], dead = KEYS[4], cancelled = KEYS[5],
            marker = KEYS[6], meta = KEYS[7], unique = KEYS[8], counts = KEYS[9], jprefix = KEYS[10],
            config = KEYS[11], minutes = KEYS[12], events = KEYS[13],
            expiring = KEYS[18], events_max = tonumber(ARGV[8]) }
local budget = tonumber(ARGV[1])
local r = retention(q, tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
local done_ttl_ms, done_max = r.done_ttl_ms, r.done_max
local dead_ttl_ms, dead_max = r.dead_ttl_ms, r.dead_max
local worker, planning = ARGV[6], ARGV[7] == '1'

local now = now_ms()
local ids, reason
if worker == '' then
  ids = redis.call('ZRANGEBYSCORE', q.leased, '-inf', now, 'LIMIT', 0, budget)
  reason = 'lease expired'
else
  ids = {}
  for _, id in ipairs(redis.call('ZRANGE', q.leased, 0, -1)) do
    if redis.call('HGET', q.jprefix .. id, 'w') == worker and #ids < budget then ids[#ids + 1] = id end
  end
  reason = 'worker ' .. worker .. ' stopped heartbeating'
end
local moved = 0
if #ids > 0 then
  local seq = next_seq(q, #ids)
  for i, id in ipairs(ids) do
    if expire_job(q, id, reason, seq + i - 1, now) then moved = moved + 1 end
  end
  set_marker(q, capped(q, limits(q)))
end
-- expiry: cancel what is still unleased; an entry of a job leased or finished is dropped
local expired = redis.call('ZRANGEBYSCORE', q.expiring, '-inf', now, 'LIMIT', 0, budget)
if #expired > 0 then
  for _, id in ipairs(expired) do
    local state = redis.call('HGET', q.jprefix .. id, 's')
    if EXPIRABLE[state] then
      redis.call('ZREM', q[state], id)
      expire_unclaimed(q, id, state, now)
    end
  end
  redis.call('ZREM', q.expiring, unpack(expired))
  set_marker(q, capped(q, limits(q)))
end
trim(q, q.done, done_ttl_ms, done_max, now, budget)
trim(q, q.cancelled, done_ttl_ms, done_max, now, budget)
trim(q, q.dead, dead_ttl_ms, dead_max, now, budget)
flush_counts(q, now)
local next_ms = -1
if planning then
  local function at(set, add_ms)
    local first = first_score(set)
    if first and (next_ms < 0 or first + add_ms < next_ms) then next_ms = first + add_ms end
  end
  at(q.leased, 0)
  at(q.expiring, 0)
  at(q.done, done_ttl_ms + 1)
  at(q.cancelled, done_ttl_ms + 1)
  at(q.dead, dead_ttl_ms + 1)
  if redis.call('ZCARD', q.done) > done_max or redis.call('ZCARD', q.cancelled) > done_max
     or redis.call('ZCARD', q.dead) > dead_max then
    next_ms = now   -- more to trim than one budget: again at the next step
  end
  store_plan(q, 'sweeper_at', next_ms)
end
return { moved, next_ms, flush_plan(q), outboxed }
