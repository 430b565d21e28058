-- resolve: waiting -> ready | scheduled | cancelled (parents in other queues)
-- Applies parents' outcomes, taken from their queues' rp:{q}:outbox, to waiting jobs of
-- this queue: each (job, parent) pair counts once however often it is delivered (field
-- dx of the job), so any number of schedulers and engines may drain the same entry. A
-- job cancelled here settles its own children (settle).
-- KEYS[1] rp:{q}:waiting    zset  jobs waiting for parents          rw
-- KEYS[2] rp:{q}:ready      zset  ready jobs                        w
-- KEYS[3] rp:{q}:scheduled  zset  delayed jobs by run time          w
-- KEYS[4] rp:{q}:marker     zset  wake-up marker for claimers       w
-- KEYS[5] rp:{q}:meta       hash  seq counter, planned times        rw
-- KEYS[6] rp:{q}:cancelled  zset  cancelled jobs                    w
-- KEYS[7] rp:{q}:unique     hash  unique_key -> job id              rw
-- KEYS[8] rp:{q}:job:       prefix of job hashes                    rw
-- KEYS[9] rp:{q}:children:  prefix of parents' child sets           rw
-- KEYS[10] rp:{q}:outbox    zset  outcomes for children in other queues  w
-- KEYS[11] rp:{q}:events   stream the queue's event log            w
-- ARGV[1] events_max        cap of the event log rp:{q}:events (0 = no events)
-- ARGV[2..] per outcome: job id, parent (queue/id), outcome (done | dead | cancelled | gone)
-- Returns: array: outcomes applied (not seen before, job still waiting), scheduler_at (see
--          flush_plan) and outboxed (see complete)
local q = { waiting = KEYS[1], ready = KEYS[2], scheduled = KEYS[3], marker = KEYS[4], meta = KEYS[5],
            cancelled = KEYS[6], unique = KEYS[7], jprefix = KEYS[8], children = KEYS[9], outbox = KEYS[10],
            events = KEYS[11], events_max = tonumber(ARGV[1]) }

local now = now_ms()
local applied = 0
for i = 2, #ARGV, 3 do
  local id = ARGV[i]
  local before = redis.call('HMGET', q.jprefix .. id, 's', 'dx')
  if resolve(q, id, ARGV[i + 1], ARGV[i + 2], now, true) then
    settle(q, id, 'cancelled', now)
  end
  if before[1] == 'waiting' and redis.call('HGET', q.jprefix .. id, 'dx') ~= before[2] then
    applied = applied + 1
  end
end
return { applied, flush_plan(q), outboxed }
