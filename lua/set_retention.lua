-- set_retention: (queue settings)
-- Replaces the queue's stored retention with the given settings: every process trims and
-- completes this queue's jobs by them (a setting not given: each engine's default). The
-- hash's other settings stay.
-- At maxmemory: runs (its first write is one Redis allows there; scripts.py)
-- KEYS[1] rp:{q}:config     hash  the queue's settings              rw
-- ARGV[1..] name, value pairs to store (done_ttl_ms, done_max, dead_ttl_ms, dead_max,
--           drop_payload, result_max); none: clear every retention setting
-- Returns: 1
local config = KEYS[1]

redis.call('HDEL', config, 'done_ttl_ms', 'done_max', 'dead_ttl_ms', 'dead_max', 'drop_payload', 'result_max')
if #ARGV > 0 then redis.call('HSET', config, unpack(ARGV)) end
return 1
