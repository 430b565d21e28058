-- expired_workers: registered (read only)
-- Lists up to ARGV[2] workers whose last heartbeat is more than ARGV[1] ms old (server
-- clock), with the queues they registered for, so the sweeper can take back their leases.
-- KEYS[1] rp:{#workers}:index   zset  worker ids by last heartbeat (ms)   r
-- KEYS[2] rp:{#workers}:w:      prefix of worker hashes                  r
-- ARGV[1] timeout_ms        heartbeat age beyond which a worker counts as gone
-- ARGV[2] limit             max workers to list
-- Returns: flat array: id, queues (JSON array; '' when the registration hash is gone)
--          per expired worker, oldest heartbeat first
local index, wprefix = KEYS[1], KEYS[2]
local timeout_ms, limit = tonumber(ARGV[1]), tonumber(ARGV[2])

local now = now_ms()
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. (now - timeout_ms),
                               'LIMIT', 0, limit)) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', wprefix .. id, 'queues') or ''
end
return out
