-- purge: <state> -> (deleted) (children: waiting -> cancelled)
-- Deletes up to ARGV[1] jobs of one state for good (oldest first), freeing their unique
-- keys. The caller repeats until fewer than the budget were taken. A deleted job that had
-- not finished can never be done: its waiting children are told it ended 'deleted' (a
-- failed parent, see settle), here for this queue's, through rp:{q}:outbox for others.
-- At maxmemory: runs (its first write is one Redis allows there; scripts.py)
-- KEYS[1] rp:{q}:<state>    zset  the state's set                  rw
-- KEYS[2] rp:{q}:marker     zset  wake-up marker for claimers       w
-- KEYS[3] rp:{q}:meta       hash  paused flag, planned times        rw
-- KEYS[4] rp:{q}:ready      zset  ready jobs (for the marker)       r
-- KEYS[5] rp:{q}:unique     hash  unique_key -> job id              rw
-- KEYS[6] rp:{q}:job:       prefix of job hashes                    rw
-- KEYS[7] rp:{q}:waiting    zset  jobs waiting for parents          rw
-- KEYS[8] rp:{q}:scheduled  zset  delayed jobs by run time          w
-- KEYS[9] rp:{q}:cancelled  zset  cancelled jobs                    w
-- KEYS[10] rp:{q}:children: prefix of parents' child sets           rw
-- KEYS[11] rp:{q}:outbox    zset  outcomes for children in other queues  w
-- KEYS[12] rp:{q}:events   stream the queue's event log            w
-- ARGV[1] budget            max jobs to delete in this call
-- ARGV[2] events_max        cap of the event log rp:{q}:events (0 = no events)
-- Returns: array: jobs deleted, jobs taken from the set (the caller repeats while it is
--          the budget), scheduler_at (see flush_plan) and outboxed (see complete)
local q = { set = KEYS[1], marker = KEYS[2], meta = KEYS[3], ready = KEYS[4], unique = KEYS[5],
            jprefix = KEYS[6], waiting = KEYS[7], scheduled = KEYS[8], cancelled = KEYS[9],
            children = KEYS[10], outbox = KEYS[11], events = KEYS[12], events_max = tonumber(ARGV[2]) }
local budget = tonumber(ARGV[1])

local ids = redis.call('ZRANGE', q.set, 0, budget - 1)
if #ids == 0 then return { 0, 0, -1, 0 } end
local now = now_ms()
local deleted = 0
for _, id in ipairs(ids) do
  -- a child cancelled by an earlier job of this call has left the set: it stays cancelled
  if redis.call('ZREM', q.set, id) == 1 then
    local state = redis.call('HGET', q.jprefix .. id, 's')
    drop_job(q, id)
    deleted = deleted + 1
    if state and not TERMINAL[state] then settle(q, id, 'deleted', now) end
  end
end
set_marker(q)
return { deleted, #ids, flush_plan(q), outboxed }
