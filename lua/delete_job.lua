-- delete_job: any state -> (deleted) (children: waiting -> cancelled)
-- Deletes one job for good, whatever its state (a worker holding its lease loses it),
-- and frees its unique key. A job that had not finished can never be done: its waiting
-- children are told it ended 'deleted' (a failed parent, see settle).
-- At maxmemory: runs (its first write is one Redis allows there; scripts.py)
-- KEYS[1] rp:{q}:marker     zset  wake-up marker for claimers       w
-- KEYS[2] rp:{q}:meta       hash  paused flag, planned times        rw
-- KEYS[3] rp:{q}:unique     hash  unique_key -> job id              rw
-- KEYS[4] rp:{q}:job:       prefix of job hashes                    rw
-- KEYS[5] rp:{q}:ready      zset  (and the six other state sets)   rw
-- KEYS[6] rp:{q}:scheduled  zset                                   rw
-- KEYS[7] rp:{q}:leased     zset                                   rw
-- KEYS[8] rp:{q}:done       zset                                   rw
-- KEYS[9] rp:{q}:dead       zset                                   rw
-- KEYS[10] rp:{q}:cancelled zset                                   rw
-- KEYS[11] rp:{q}:waiting   zset                                   rw
-- KEYS[12] rp:{q}:children: prefix of parents' child sets           rw
-- KEYS[13] rp:{q}:outbox    zset  outcomes for children in other queues  w
-- KEYS[14] rp:{q}:events   stream the queue's event log            w
-- ARGV[1] id                job id
-- ARGV[2] events_max        cap of the event log rp:{q}:events (0 = no events)
-- Returns: array: 1 deleted / 0 no such job, scheduler_at (see flush_plan) and outboxed
--          (see complete)
local q = { marker = KEYS[1], meta = KEYS[2], unique = KEYS[3], jprefix = KEYS[4], ready = KEYS[5],
            scheduled = KEYS[6], cancelled = KEYS[10], waiting = KEYS[11], children = KEYS[12],
            outbox = KEYS[13], events = KEYS[14], events_max = tonumber(ARGV[2]) }
local id = ARGV[1]

if redis.call('EXISTS', q.jprefix .. id) == 0 then return { 0, -1, 0 } end
local state = redis.call('HGET', q.jprefix .. id, 's')
for i = 5, 11 do redis.call('ZREM', KEYS[i], id) end
drop_job(q, id)
if state and not TERMINAL[state] then settle(q, id, 'deleted', now_ms()) end
set_marker(q)
return { 1, flush_plan(q), outboxed }
