-- rewake: queue -> queue (wake-up marker set again)
-- Sets the wake-up marker again after a waiter popped it and claims nothing (a busy
-- worker, a wait that ended, the wait hub with nobody to wake), so another claimer of the
-- queue wakes: when jobs are ready or scheduled (claimers then learn the earliest run
-- time) and the queue is not paused.
-- KEYS[1] rp:{q}:ready      zset  ready jobs                       r
-- KEYS[2] rp:{q}:scheduled  zset  delayed jobs by run time          r
-- KEYS[3] rp:{q}:marker     zset  wake-up marker for claimers       w
-- KEYS[4] rp:{q}:meta       hash  paused flag                      r
-- Returns: 1
local q = { ready = KEYS[1], scheduled = KEYS[2], marker = KEYS[3], meta = KEYS[4] }
if redis.call('ZCARD', q.ready) > 0 or redis.call('ZCARD', q.scheduled) > 0 then wake(q) end
return 1
