-- purge: <state> -> (deleted)
-- Deletes up to ARGV[1] jobs of one state for good (oldest first), freeing their unique
-- keys. The caller repeats until it returns less than the budget.
-- KEYS[1] rp:{q}:<state>    zset  the state's set                  rw
-- KEYS[2] rp:{q}:marker     zset  wake-up marker for claimers       w
-- KEYS[3] rp:{q}:meta       hash  paused flag                      r
-- KEYS[4] rp:{q}:ready      zset  ready jobs (for the marker)       r
-- KEYS[5] rp:{q}:unique     hash  unique_key -> job id              rw
-- KEYS[6] rp:{q}:job:       prefix of job hashes                    rw
-- ARGV[1] budget            max jobs to delete in this call
-- Returns: number of jobs deleted
local q = { set = KEYS[1], marker = KEYS[2], meta = KEYS[3], ready = KEYS[4], unique = KEYS[5],
            jprefix = KEYS[6] }
local budget = tonumber(ARGV[1])

local ids = redis.call('ZRANGE', q.set, 0, budget - 1)
if #ids == 0 then return 0 end
for _, id in ipairs(ids) do drop_job(q, id) end
redis.call('ZREM', q.set, unpack(ids))
set_marker(q)
return #ids
