-- resume: paused -> queue
-- Lets a paused queue hand out jobs again and wakes blocked claimers.
-- At maxmemory: runs (its first write is one Redis allows there; scripts.py)
-- KEYS[1] rp:{q}:meta       hash  paused flag, paused_at, paused_reason  w
-- KEYS[2] rp:{q}:marker     zset  wake-up marker for claimers       w
-- KEYS[3] rp:{q}:ready      zset  ready jobs                       r
-- KEYS[4] rp:{q}:events    stream the queue's event log         w
-- ARGV[1] events_max        cap of the event log rp:{q}:events (0 = no events)
-- Returns: 1 if the queue was paused, 0 if it was running
local q = { meta = KEYS[1], marker = KEYS[2], ready = KEYS[3], events = KEYS[4],
            events_max = tonumber(ARGV[1]) }

local was = redis.call('HDEL', q.meta, 'paused')
redis.call('HDEL', q.meta, 'paused_at', 'paused_reason')
set_marker(q)
if was == 1 then emit(q, 'resumed', '') end
return was
