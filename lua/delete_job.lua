-- delete_job: any state -> (deleted)
-- Deletes one job for good, whatever its state (a worker holding its lease loses it),
-- and frees its unique key.
-- KEYS[1] rp:{q}:marker     zset  wake-up marker for claimers       w
-- KEYS[2] rp:{q}:meta       hash  paused flag                      r
-- KEYS[3] rp:{q}:unique     hash  unique_key -> job id              rw
-- KEYS[4] rp:{q}:job:       prefix of job hashes                    rw
-- KEYS[5] rp:{q}:ready      zset  (and the five other state sets)   rw
-- KEYS[6] rp:{q}:scheduled  zset                                   rw
-- KEYS[7] rp:{q}:leased     zset                                   rw
-- KEYS[8] rp:{q}:done       zset                                   rw
-- KEYS[9] rp:{q}:dead       zset                                   rw
-- KEYS[10] rp:{q}:cancelled zset                                   rw
-- ARGV[1] id                job id
-- Returns: 1 deleted, 0 no such job
local q = { marker = KEYS[1], meta = KEYS[2], unique = KEYS[3], jprefix = KEYS[4], ready = KEYS[5] }
local id = ARGV[1]

if redis.call('EXISTS', q.jprefix .. id) == 0 then return 0 end
for i = 5, 10 do redis.call('ZREM', KEYS[i], id) end
drop_job(q, id)
set_marker(q)
return 1
