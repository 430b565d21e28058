-- progress: leased -> leased (progress recorded)
-- Records how far the current attempt of a leased job has got, only if its token still
-- holds a live lease: field pg of the job hash, JSON {"v": value, "m": message, "at": ms}
-- (m absent without a message; the next lease clears it), and a progress event.
-- KEYS[1] rp:{q}:leased     zset  leased jobs by expiry            r
-- KEYS[2] rp:{q}:job:       prefix of job hashes                    rw
-- KEYS[3] rp:{q}:events    stream the queue's event log         w
-- ARGV[1] events_max        cap of the event log rp:{q}:events (0 = no events)
-- ARGV[2] id                job id
-- ARGV[3] token             the lease token
-- ARGV[4] value             a number in [0, 100] (checked by the caller)
-- ARGV[5] message           text ('' = none; its length checked by the caller)
-- Returns: the time recorded (ms), or 0 when the lease is lost (nothing written)
local q = { leased = KEYS[1], jprefix = KEYS[2], events = KEYS[3], events_max = tonumber(ARGV[1]) }
local id, token, value, message = ARGV[2], ARGV[3], ARGV[4], ARGV[5]

local now = now_ms()
if not held(q, id, token, now) then return 0 end
local record = { v = tonumber(value), at = now }
if message ~= '' then record.m = message end
redis.call('HSET', q.jprefix .. id, 'pg', cjson.encode(record))
if message ~= '' then
  emit(q, 'progress', id, 'v', value, 'm', message)
else
  emit(q, 'progress', id, 'v', value)
end
return now
