-- set_priority: waiting | scheduled | ready -> the same state, with a new priority
-- Changes the priority of a job that has not been leased yet. A ready job is re-scored in
-- place: it keeps its order number (its place in line among jobs of equal priority) and
-- moves to its new priority band. A scheduled or waiting job keeps its place in its set;
-- the new priority orders it once it becomes ready.
-- KEYS[1] rp:{q}:ready      zset  ready jobs                       rw
-- KEYS[2] rp:{q}:job:       prefix of job hashes                    rw
-- ARGV[1] id                job id
-- ARGV[2] priority          the new priority (checked by the caller)
-- Returns: { 1, old priority } when changed, { 0, state } when the job is leased or
--          finished (nothing written)
-- Errors: NOT_FOUND when the job does not exist
local q = { ready = KEYS[1], jprefix = KEYS[2] }
local id, priority = ARGV[1], tonumber(ARGV[2])

local jkey = q.jprefix .. id
local f = redis.call('HMGET', jkey, 's', 'r')
if not f[1] then return redis.error_reply('NOT_FOUND no job ' .. id) end
if f[1] ~= 'ready' and f[1] ~= 'scheduled' and f[1] ~= 'waiting' then return { 0, f[1] } end
local old = finite(f[2]) or 0
if f[1] == 'ready' then
  local score = tonumber(redis.call('ZSCORE', q.ready, id))
  if score then   -- score = -priority * span + order number: keep the order number
    redis.call('ZADD', q.ready, score + (old - priority) * PRIORITY_SPAN, id)
  end
end
if priority == 0 then redis.call('HDEL', jkey, 'r') else redis.call('HSET', jkey, 'r', priority) end
return { 1, old }
