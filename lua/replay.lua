-- replay: dead -> ready
-- Gives dead jobs a new life: attempts reset to 0, errors kept, unique key taken again
-- when no other unfinished job holds it.
-- KEYS[1] rp:{q}:dead       zset  dead jobs by finish time         rw
-- KEYS[2] rp:{q}:ready      zset  ready jobs                       w
-- KEYS[3] rp:{q}:marker     zset  wake-up marker for claimers       w
-- KEYS[4] rp:{q}:meta       hash  seq counter, paused flag          rw
-- KEYS[5] rp:{q}:unique     hash  unique_key -> job id              rw
-- KEYS[6] rp:{q}:job:       prefix of job hashes                    rw
-- ARGV[1] budget            with no ids: replay at most this many, oldest first
-- ARGV[2..] ids             the dead jobs to replay (others are skipped); none = oldest
-- Returns: number of jobs replayed
local q = { dead = KEYS[1], ready = KEYS[2], marker = KEYS[3], meta = KEYS[4], unique = KEYS[5],
            jprefix = KEYS[6] }
local budget = tonumber(ARGV[1])

local ids = {}
if #ARGV > 1 then
  for i = 2, #ARGV do
    if redis.call('ZSCORE', q.dead, ARGV[i]) then ids[#ids + 1] = ARGV[i] end
  end
else
  ids = redis.call('ZRANGE', q.dead, 0, budget - 1)
end
if #ids == 0 then return 0 end
local now = now_ms()
local seq = next_seq(q, #ids)
local replayed = 0
redis.call('ZREM', q.dead, unpack(ids))
for i, id in ipairs(ids) do
  local jkey = q.jprefix .. id
  if make_ready(q, id, seq + i - 1, now) then
    redis.call('HSET', jkey, 'a', 0)
    local k = redis.call('HGET', jkey, 'k')
    if k then redis.call('HSETNX', q.unique, k, id) end
    replayed = replayed + 1
  end
end
set_marker(q)
return replayed
