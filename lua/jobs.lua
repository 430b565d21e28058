-- jobs: (read only)
-- One page of a state's jobs with their hashes: ready in claim order, scheduled and
-- leased by time, finished ones newest first.
-- KEYS[1] rp:{q}:<state>    zset  the state's set                  r
-- KEYS[2] rp:{q}:job:       prefix of job hashes                    r
-- ARGV[1] offset            index of the first job
-- ARGV[2] limit             max jobs
-- ARGV[3] newest_first      1 to list from the highest score down
-- Returns: flat array: id, score, hash fields as a flat name/value array, per job;
--          jobs whose hash is gone are left out
local q = { set = KEYS[1], jprefix = KEYS[2] }
local offset, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local newest_first = ARGV[3] == '1'

local cmd = newest_first and 'ZREVRANGE' or 'ZRANGE'
local page = redis.call(cmd, q.set, offset, offset + limit - 1, 'WITHSCORES')
local out = {}
for i = 1, #page, 2 do
  local fields = redis.call('HGETALL', q.jprefix .. page[i])
  if #fields > 0 then
    out[#out + 1] = page[i]
    out[#out + 1] = page[i + 1]
    out[#out + 1] = fields
  end
end
return out
