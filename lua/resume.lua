-- resume: paused -> queue
-- Lets a paused queue hand out jobs again and wakes blocked claimers.
-- KEYS[1] rp:{q}:meta       hash  paused flag                      w
-- KEYS[2] rp:{q}:marker     zset  wake-up marker for claimers       w
-- KEYS[3] rp:{q}:ready      zset  ready jobs                       r
-- Returns: 1 if the queue was paused, 0 if it was running
local q = { meta = KEYS[1], marker = KEYS[2], ready = KEYS[3] }

local was = redis.call('HDEL', q.meta, 'paused')
set_marker(q)
return was
