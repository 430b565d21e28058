-- set_limits: (queue settings)
-- Replaces the queue's flow-control limits (Engine.set_limits): at most `rate` claims in
-- any window of `per_ms`, at most `concurrency` jobs leased at once; every claim script
-- obeys them. The hash's other settings stay. The rate's sliding log keeps the claims of
-- the window (cut to the new rate; deleted with the rate). Blocked claimers are woken,
-- as the new limits may let them claim.
-- At maxmemory: runs (its first write is one Redis allows there; scripts.py)
-- KEYS[1] rp:{q}:config     hash  the queue's settings              rw
-- KEYS[2] rp:{q}:ratelog    list  claim times (ms) in the rate window, newest first  rw
-- KEYS[3] rp:{q}:ready      zset  ready jobs (for the marker)       r
-- KEYS[4] rp:{q}:marker     zset  wake-up marker for claimers       w
-- KEYS[5] rp:{q}:meta       hash  paused flag                      r
-- ARGV[1] rate              claims per window ('' = no rate limit)
-- ARGV[2] per_ms            the window (ms; '' without a rate)
-- ARGV[3] concurrency       jobs leased at once ('' = no cap)
-- Returns: 1
local q = { config = KEYS[1], ratelog = KEYS[2], ready = KEYS[3], marker = KEYS[4], meta = KEYS[5] }
local rate, per_ms, concurrency = ARGV[1], ARGV[2], ARGV[3]

redis.call('HDEL', q.config, 'rate', 'per_ms', 'concurrency')
if rate ~= '' then
  redis.call('HSET', q.config, 'rate', rate, 'per_ms', per_ms)
  redis.call('LTRIM', q.ratelog, 0, tonumber(rate) - 1)
else
  redis.call('DEL', q.ratelog)
end
if concurrency ~= '' then redis.call('HSET', q.config, 'concurrency', concurrency) end
set_marker(q)
return 1
