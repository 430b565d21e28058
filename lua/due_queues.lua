-- due_queues: (read only) the queues a daemon has work in now
-- Lists the queues whose planned time in rp:due:<daemon> has come (see flush_plan in
-- lib.lua), earliest first, with the server time and the next planned time after now.
-- KEYS[1] rp:due:<daemon>   zset  queue name -> planned ms (global key)  r
-- ARGV[1] limit             most queues returned
-- Returns: now_ms, the earliest planned ms after now (-1 if none), then queue names
local due_key, limit = KEYS[1], tonumber(ARGV[1])

local now = now_ms()
local later = redis.call('ZRANGEBYSCORE', due_key, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
local out = { now, later[2] and tonumber(later[2]) or -1 }
for _, queue in ipairs(redis.call('ZRANGEBYSCORE', due_key, '-inf', now, 'LIMIT', 0, limit)) do
  out[#out + 1] = queue
end
return out
