-- remove_queue: empty queue -> (deleted)
-- Deletes every key of a queue that has no waiting, scheduled, ready or leased job and no cue: its
-- finished jobs, counters, history, event log, unique keys, settings (paused flag, retention, limits) and
-- the daemons' planned times. With any unfinished job or cue it changes nothing. The caller then removes the
-- queue from rp:queues and rp:due:* (plain commands) and re-reads meta: a job enqueued
-- right after this script recreates meta, and the caller registers the queue again.
-- At maxmemory: runs (its first write is one Redis allows there; scripts.py)
-- KEYS[1] rp:{q}:scheduled  zset  delayed jobs by run time          rw
-- KEYS[2] rp:{q}:ready      zset  ready jobs                       rw
-- KEYS[3] rp:{q}:leased     zset  leased jobs by expiry            rw
-- KEYS[4] rp:{q}:cue_next   zset  active cue names by next fire ms  rw
-- KEYS[5] rp:{q}:cues       hash  cue name -> definition (JSON)     rw
-- KEYS[6] rp:{q}:done       zset  done jobs by finish time         rw
-- KEYS[7] rp:{q}:dead       zset  dead jobs by finish time         rw
-- KEYS[8] rp:{q}:cancelled  zset  cancelled jobs by cancel time    rw
-- KEYS[9] rp:{q}:marker     zset  wake-up marker for claimers       w
-- KEYS[10] rp:{q}:meta      hash  seq counter, paused flag, planned times  w
-- KEYS[11] rp:{q}:unique    hash  unique_key -> job id              w
-- KEYS[12] rp:{q}:counts    hash  lifetime totals                   w
-- KEYS[13] rp:{q}:cueapi    hash  cueapi compat records of the queue's cues  w
-- KEYS[14] rp:{q}:config    hash  the queue's stored retention and limits  w
-- KEYS[15] rp:{q}:job:      prefix of job hashes                    w
-- KEYS[16] rp:{q}:minutes   hash  jobs done / failed per minute     w
-- KEYS[17] rp:{q}:events    stream the queue's event log          w
-- KEYS[18] rp:{q}:ratelog   list  the rate limit's claim times      w
-- KEYS[19] rp:{q}:waiting   zset  jobs waiting for parents          r
-- KEYS[20] rp:{q}:linking   zset  cross-queue children to link again (none waiting: stale)  w
-- KEYS[21] rp:{q}:expiring  zset  jobs with an expiry (entries of finished jobs)  w
-- Returns: { removed, scheduled, ready, leased, cues, waiting }: removed 1 (keys deleted), 0
--          (the queue had no keys), or -1 (not empty: nothing changed; the counts say why)
local q = { scheduled = KEYS[1], ready = KEYS[2], leased = KEYS[3], cue_next = KEYS[4], cues = KEYS[5],
            done = KEYS[6], dead = KEYS[7], cancelled = KEYS[8], jprefix = KEYS[15] }

local counts = { redis.call('ZCARD', q.scheduled), redis.call('ZCARD', q.ready),
                 redis.call('ZCARD', q.leased), redis.call('HLEN', q.cues), redis.call('ZCARD', KEYS[19]) }
for _, n in ipairs(counts) do
  if n > 0 then return { -1, counts[1], counts[2], counts[3], counts[4], counts[5] } end
end
local deleted = 0
for _, set in ipairs({ q.done, q.dead, q.cancelled }) do
  local ids = redis.call('ZRANGE', set, 0, -1)
  for _, id in ipairs(ids) do redis.call('DEL', q.jprefix .. id) end
end
for i = 1, 14 do deleted = deleted + redis.call('DEL', KEYS[i]) end
deleted = deleted + redis.call('DEL', KEYS[16])
deleted = deleted + redis.call('DEL', KEYS[17])
deleted = deleted + redis.call('DEL', KEYS[18])
deleted = deleted + redis.call('DEL', KEYS[20])
deleted = deleted + redis.call('DEL', KEYS[21])
return { deleted > 0 and 1 or 0, 0, 0, 0, 0, 0 }
