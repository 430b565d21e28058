-- rewake: queue -> queue (wake-up marker set again)
-- Sets the wake-up marker again after a waiter popped it and claims nothing (a busy
-- worker, a wait that ended, the wait hub with nobody to wake), so another claimer of the
-- queue wakes: when jobs are ready or scheduled (claimers then learn the earliest run
-- time) and the queue is not paused -- ready jobs not while the queue's concurrency cap
-- is reached (a finishing job sets the marker then).
-- KEYS[1] rp:{q}:ready      zset  ready jobs                       r
-- KEYS[2] rp:{q}:scheduled  zset  delayed jobs by run time          r
-- KEYS[3] rp:{q}:marker     zset  wake-up marker for claimers       w
-- KEYS[4] rp:{q}:meta       hash  paused flag                      r
-- KEYS[5] rp:{q}:config     hash  the queue's limits (concurrency)  r
-- KEYS[6] rp:{q}:leased     zset  leased jobs (against the cap)     r
-- Returns: 1
local q = { ready = KEYS[1], scheduled = KEYS[2], marker = KEYS[3], meta = KEYS[4], config = KEYS[5],
            leased = KEYS[6] }
if redis.call('ZCARD', q.ready) > 0 then
  wake(q)   -- not while the concurrency cap is reached (wake)
elseif redis.call('ZCARD', q.scheduled) > 0 and redis.call('HEXISTS', q.meta, 'paused') == 0 then
  redis.call('ZADD', q.marker, 0, MARKER)   -- a claimer it wakes learns when the next job is due
end
return 1
