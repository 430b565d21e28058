-- promote: scheduled -> ready
-- Moves delayed jobs whose run time has come to ready (the scheduler daemon's step; claim
-- does the same for its own queue).
-- At maxmemory: runs (its first write is one Redis allows there; scripts.py)
-- KEYS[1] rp:{q}:scheduled  zset  delayed jobs by run time          rw
-- KEYS[2] rp:{q}:ready      zset  ready jobs                       w
-- KEYS[3] rp:{q}:marker     zset  wake-up marker for claimers       w
-- KEYS[4] rp:{q}:meta       hash  seq counter, paused flag          rw
-- KEYS[5] rp:{q}:job:       prefix of job hashes                    rw
-- KEYS[6] rp:{q}:cue_next   zset  active cue names by next fire ms  r
-- KEYS[7] rp:{q}:outbox     zset  outcomes for children in other queues (due at once)  r
-- ARGV[1] budget            max jobs to move in this call
-- ARGV[2] plan              1: store the scheduler's next visit (earliest scheduled job or
--                           cue fire, an outbox entry) in meta scheduler_at (HDEL when there is none)
-- Returns: { moved, next_ms }: jobs moved, and with plan the next visit (-1 = none)
local q = { scheduled = KEYS[1], ready = KEYS[2], marker = KEYS[3], meta = KEYS[4], jprefix = KEYS[5],
            cue_next = KEYS[6], outbox = KEYS[7] }
local budget, planning = tonumber(ARGV[1]), ARGV[2] == '1'

local moved = promote_due(q, now_ms(), budget)
if moved > 0 then set_marker(q) end
local next_ms = -1
if planning then
  for _, set in ipairs({ q.scheduled, q.cue_next, q.outbox }) do
    local first = first_score(set)
    if first and (next_ms < 0 or first < next_ms) then next_ms = first end
  end
  store_plan(q, 'scheduler_at', next_ms)
end
return { moved, next_ms }
