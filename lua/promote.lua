-- promote: scheduled -> ready
-- Moves delayed jobs whose run time has come to ready (the scheduler daemon's step; claim
-- does the same for its own queue).
-- KEYS[1] rp:{q}:scheduled  zset  delayed jobs by run time          rw
-- KEYS[2] rp:{q}:ready      zset  ready jobs                       w
-- KEYS[3] rp:{q}:marker     zset  wake-up marker for claimers       w
-- KEYS[4] rp:{q}:meta       hash  seq counter, paused flag          rw
-- KEYS[5] rp:{q}:job:       prefix of job hashes                    rw
-- ARGV[1] budget            max jobs to move in this call
-- Returns: number of jobs moved
local q = { scheduled = KEYS[1], ready = KEYS[2], marker = KEYS[3], meta = KEYS[4], jprefix = KEYS[5] }
local budget = tonumber(ARGV[1])

local moved = promote_due(q, now_ms(), budget)
if moved > 0 then set_marker(q) end
return moved
