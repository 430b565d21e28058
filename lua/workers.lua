-- workers: registered (read only)
-- Lists the workers whose last heartbeat is at most ARGV[1] ms old (server clock).
-- KEYS[1] rp:{#workers}:index   zset  worker ids by last heartbeat (ms)   r
-- KEYS[2] rp:{#workers}:w:      prefix of worker hashes                  r
-- ARGV[1] timeout_ms        heartbeat age beyond which a worker counts as gone
-- Returns: flat array: now_ms, then id, host, pid, queues (JSON), started_ms, beat_ms,
--          jobs (JSON), processed, failed per live worker, oldest heartbeat first
local index, wprefix = KEYS[1], KEYS[2]
local timeout_ms = tonumber(ARGV[1])

local now = now_ms()
local out = { now }
for _, id in ipairs(redis.call('ZRANGEBYSCORE', index, now - timeout_ms, '+inf')) do
  local f = redis.call('HMGET', wprefix .. id, 'host', 'pid', 'queues', 'started', 'beat',
                       'jobs', 'processed', 'failed')
  if f[5] then
    out[#out + 1] = id
    for i = 1, 8 do out[#out + 1] = f[i] or '' end
  end
end
return out
