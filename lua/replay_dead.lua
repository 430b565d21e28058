-- replay_dead: dead -> ready
-- Gives dead jobs a new life: attempts reset to 0, errors kept, unique key taken again.
-- A job whose unique key another unfinished job holds now is not replayed (two
-- unfinished jobs never share a key): it stays dead, the reason added to its errors.
-- KEYS[1] rp:{q}:dead       zset  dead jobs by finish time         rw
-- KEYS[2] rp:{q}:ready      zset  ready jobs                       w
-- KEYS[3] rp:{q}:marker     zset  wake-up marker for claimers       w
-- KEYS[4] rp:{q}:meta       hash  seq counter, paused flag          rw
-- KEYS[5] rp:{q}:unique     hash  unique_key -> job id              rw
-- KEYS[6] rp:{q}:job:       prefix of job hashes                    rw
-- KEYS[7] rp:{q}:events    stream the queue's event log         w
-- ARGV[1] budget            with no ids: look at most this many dead jobs, oldest first
-- ARGV[2] skip              with no ids: pass over this many oldest first (the ones
--                           earlier calls of the same replay refused: they stay in front)
-- ARGV[3] events_max        cap of the event log rp:{q}:events (0 = no events)
-- ARGV[4..] ids             the dead jobs to replay (others are skipped); none = oldest
-- Returns: array: replayed, refused, then the ids of the refused jobs
local q = { dead = KEYS[1], ready = KEYS[2], marker = KEYS[3], meta = KEYS[4], unique = KEYS[5],
            jprefix = KEYS[6], events = KEYS[7],
            events_max = tonumber(ARGV[3]) }
local budget, skip = tonumber(ARGV[1]), tonumber(ARGV[2])

local ids, seen = {}, {}
if #ARGV > 3 then
  for i = 4, #ARGV do
    local id = ARGV[i]
    if not seen[id] and redis.call('ZSCORE', q.dead, id) then ids[#ids + 1] = id end
    seen[id] = true
  end
else
  ids = redis.call('ZRANGE', q.dead, skip, skip + budget - 1)
end
local out = { 0, 0 }
if #ids == 0 then return out end
local now = now_ms()
local seq = next_seq(q, #ids)
for i, id in ipairs(ids) do
  local jkey = q.jprefix .. id
  local k = redis.call('HGET', jkey, 'k')
  local holder = k and unique_holder(q, k)
  if holder and holder ~= id then
    push_error(jkey, finite(redis.call('HGET', jkey, 'a')) or 0,
               'not replayed: unique key ' .. k .. ' is held by unfinished job ' .. holder, now)
    out[2] = out[2] + 1
    out[#out + 1] = id
  else
    redis.call('ZREM', q.dead, id)
    if make_ready(q, id, seq + i - 1, now) then
      redis.call('HSET', jkey, 'a', 0)
      if k then redis.call('HSET', q.unique, k, id) end
      out[1] = out[1] + 1
      emit(q, 'replayed', id)
    end
  end
end
set_marker(q)
return out
