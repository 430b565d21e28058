-- pause: queue -> paused
-- Stops the queue from handing out jobs; enqueueing still works.
-- KEYS[1] rp:{q}:meta       hash  paused flag                      w
-- KEYS[2] rp:{q}:marker     zset  wake-up marker for claimers       w
-- Returns: 1 if the queue was running, 0 if it was paused already
local q = { meta = KEYS[1], marker = KEYS[2] }

redis.call('ZREM', q.marker, MARKER)
return redis.call('HSET', q.meta, 'paused', 1)
