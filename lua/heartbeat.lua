-- heartbeat: leased -> leased (extended)
-- Extends the leases of a batch of jobs, each only if its token still holds a live lease.
-- KEYS[1] rp:{q}:leased     zset  leased jobs by expiry            rw
-- KEYS[2] rp:{q}:job:       prefix of job hashes                    r
-- ARGV[1] n                 number of jobs
-- ARGV[2..] per job: id, token, lease_ms
-- Returns: array of the new lease expiry (ms) or 0 (lease lost) per job
local q = { leased = KEYS[1], jprefix = KEYS[2] }
local n = tonumber(ARGV[1])

local now = now_ms()
local out = {}
for i = 0, n - 1 do
  local b = 2 + i * 3
  local id = ARGV[b]
  if held(q, id, ARGV[b + 1], now) then
    local expiry = now + tonumber(ARGV[b + 2])
    redis.call('ZADD', q.leased, expiry, id)
    out[#out + 1] = expiry
  else
    out[#out + 1] = 0
  end
end
return out
