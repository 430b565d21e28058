-- cancel: waiting | scheduled | ready | leased -> cancelled (children: waiting -> cancelled)
-- Cancels an unfinished job. A worker holding its lease loses it (its complete/fail
-- raise LeaseLost). Finished jobs are left as they are. A cancelled lease frees a slot of
-- the queue's concurrency cap, so the marker is set again when jobs are ready.
-- At maxmemory: runs (its first write is one Redis allows there; scripts.py)
-- KEYS[1] rp:{q}:scheduled  zset  delayed jobs by run time          rw
-- KEYS[2] rp:{q}:ready      zset  ready jobs                       rw
-- KEYS[3] rp:{q}:leased     zset  leased jobs by expiry            rw
-- KEYS[4] rp:{q}:cancelled  zset  cancelled jobs by cancel time    rw
-- KEYS[5] rp:{q}:marker     zset  wake-up marker for claimers       w
-- KEYS[6] rp:{q}:meta       hash  paused flag                      r
-- KEYS[7] rp:{q}:unique     hash  unique_key -> job id              rw
-- KEYS[8] rp:{q}:job:       prefix of job hashes                    rw
-- KEYS[9] rp:{q}:config     hash  the queue's stored retention (wins over ARGV) and limits  r
-- KEYS[10] rp:{q}:events   stream the queue's event log         w
-- KEYS[11] rp:{q}:waiting    zset  jobs waiting for parents          rw
-- KEYS[12] rp:{q}:children:  prefix of parents' child sets           rw
-- KEYS[13] rp:{q}:outbox     zset  parents' outcomes for children in other queues  w
-- ARGV[1] id                job id
-- ARGV[2] done_ttl_ms       keep cancelled jobs this long (done retention; default)
-- ARGV[3] done_max          keep at most this many cancelled jobs (default)
-- ARGV[4] events_max        cap of the event log rp:{q}:events (0 = no events)
-- Returns: array: 1 cancelled / 0 already finished, scheduler_at (see flush_plan) and
--          outboxed (see complete)
-- Errors: NOT_FOUND when the job does not exist
local q = { waiting = KEYS[11], children = KEYS[12], outbox = KEYS[13],
            scheduled = KEYS[1], ready = KEYS[2], leased = KEYS[3], cancelled = KEYS[4],
            marker = KEYS[5], meta = KEYS[6], unique = KEYS[7], jprefix = KEYS[8], config = KEYS[9], events = KEYS[10],
            events_max = tonumber(ARGV[4]) }
local id = ARGV[1]

local state = redis.call('HGET', q.jprefix .. id, 's')
if not state then return redis.error_reply('NOT_FOUND no job ' .. id) end
if TERMINAL[state] or not q[state] then return { 0, -1, 0 } end
local now = now_ms()
redis.call('ZREM', q[state], id)
finish(q, id, 'cancelled', now)
emit(q, 'cancelled', id, 'p', state)
if state == 'ready' or state == 'leased' then set_marker(q, capped(q, limits(q))) end
local r = retention(q, tonumber(ARGV[2]), tonumber(ARGV[3]))
local done_ttl_ms, done_max = r.done_ttl_ms, r.done_max
trim(q, q.cancelled, done_ttl_ms, done_max, now, 10)
return { 1, flush_plan(q), outboxed }
