-- cancel: scheduled | ready | leased -> cancelled
-- Cancels an unfinished job. A worker holding its lease loses it (its complete/fail
-- raise LeaseLost). Finished jobs are left as they are.
-- KEYS[1] rp:{q}:scheduled  zset  delayed jobs by run time          rw
-- KEYS[2] rp:{q}:ready      zset  ready jobs                       rw
-- KEYS[3] rp:{q}:leased     zset  leased jobs by expiry            rw
-- KEYS[4] rp:{q}:cancelled  zset  cancelled jobs by cancel time    rw
-- KEYS[5] rp:{q}:marker     zset  wake-up marker for claimers       w
-- KEYS[6] rp:{q}:meta       hash  paused flag                      r
-- KEYS[7] rp:{q}:unique     hash  unique_key -> job id              rw
-- KEYS[8] rp:{q}:job:       prefix of job hashes                    rw
-- ARGV[1] id                job id
-- ARGV[2] ttl_ms            keep cancelled jobs this long (done retention)
-- ARGV[3] max_count         keep at most this many cancelled jobs
-- Returns: 1 cancelled, 0 already finished
-- Errors: NOT_FOUND when the job does not exist
local q = { scheduled = KEYS[1], ready = KEYS[2], leased = KEYS[3], cancelled = KEYS[4],
            marker = KEYS[5], meta = KEYS[6], unique = KEYS[7], jprefix = KEYS[8] }
local id, ttl_ms, max_count = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])

local state = redis.call('HGET', q.jprefix .. id, 's')
if not state then return redis.error_reply('NOT_FOUND no job ' .. id) end
if TERMINAL[state] or not q[state] then return 0 end
local now = now_ms()
redis.call('ZREM', q[state], id)
finish(q, id, 'cancelled', now)
if state == 'ready' then set_marker(q) end
trim(q, q.cancelled, ttl_ms, max_count, now, 10)
return 1
