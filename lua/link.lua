-- link: (parent) -> parent with a child in another queue
-- Records that job (child queue, child id) waits for job parent_id of this queue: in
-- rp:{q}:children:<parent_id>, settled when the parent finishes. A parent that has
-- finished already (or is gone) puts its outcome in rp:{q}:outbox at once, so every
-- outcome reaches the child the same way (Engine._drain_outbox, resolve.lua).
-- KEYS[1] rp:{q}:job:       prefix of job hashes                    r
-- KEYS[2] rp:{q}:children:  prefix of parents' child sets           w
-- KEYS[3] rp:{q}:outbox     zset  outcomes for children in other queues  w
-- KEYS[4] rp:{q}:meta       hash  planned times                     rw
-- ARGV[1..] per link: parent_id, child queue, child id
-- Returns: array: outboxed (1: entries written to rp:{q}:outbox), scheduler_at (see flush_plan)
local q = { jprefix = KEYS[1], children = KEYS[2], outbox = KEYS[3], meta = KEYS[4] }

local now = now_ms()
for i = 1, #ARGV, 3 do
  local pid, member = ARGV[i], ARGV[i + 1] .. '\n' .. ARGV[i + 2]
  local state = redis.call('HGET', q.jprefix .. pid, 's')
  if state and not TERMINAL[state] then
    redis.call('SADD', q.children .. pid, member)
  else
    redis.call('ZADD', q.outbox, now, member .. '\n' .. pid .. '\n' .. (state or 'gone'))
    plan('scheduler_at', now)
    outboxed = 1
  end
end
return { outboxed, flush_plan(q) }
