-- complete: leased -> done (children: waiting -> ready | scheduled | cancelled)
-- Completes a batch of leased jobs, each only if its token still holds a live lease, then
-- trims the done set to its retention (age and count). The queue's stored retention
-- (rp:{q}:config) wins over the ARGV defaults, and may drop payloads and big results.
-- When the queue's concurrency cap was reached, a freed slot wakes a blocked claimer.
-- Durable: yes (with durable writes on, the reply waits for a replica; scripts.py)
-- At maxmemory: runs (its first write is one Redis allows there; scripts.py)
-- KEYS[1] rp:{q}:leased     zset  leased jobs by expiry            rw
-- KEYS[2] rp:{q}:done       zset  done jobs by finish time         rw
-- KEYS[3] rp:{q}:unique     hash  unique_key -> job id              rw
-- KEYS[4] rp:{q}:counts     hash  lifetime totals                   w
-- KEYS[5] rp:{q}:job:       prefix of job hashes                    rw
-- KEYS[6] rp:{q}:config     hash  the queue's stored retention and limits  r
-- KEYS[7] rp:{q}:minutes   hash  jobs done / failed per minute     w
-- KEYS[8] rp:{q}:events    stream the queue's event log         w
-- KEYS[9] rp:{q}:waiting    zset  jobs waiting for parents          rw
-- KEYS[10] rp:{q}:ready      zset  ready jobs (released children)   w
-- KEYS[11] rp:{q}:scheduled  zset  delayed jobs (released children) w
-- KEYS[12] rp:{q}:marker     zset  wake-up marker for claimers       w
-- KEYS[13] rp:{q}:meta       hash  seq counter, planned times      rw
-- KEYS[14] rp:{q}:cancelled  zset  cancelled jobs (children of failed parents)  w
-- KEYS[15] rp:{q}:children:  prefix of parents' child sets           rw
-- KEYS[16] rp:{q}:outbox     zset  parents' outcomes for children in other queues  w
-- ARGV[1] done_ttl_ms       keep done jobs this long (default)
-- ARGV[2] done_max          keep at most this many done jobs (default)
-- ARGV[3] events_max        cap of the event log rp:{q}:events (0 = no events)
-- ARGV[4] n                 number of jobs
-- ARGV[5..] per job: id, token, result (msgpack)
-- Returns: array of 1 (done) or 0 (lease lost) per job, then scheduler_at (ms for ZADD
--          rp:due:scheduler LT, -1 = none; see flush_plan) and outboxed (1: children in
--          other queues have entries in rp:{q}:outbox for Engine._drain_outbox)
local q = { waiting = KEYS[9], ready = KEYS[10], scheduled = KEYS[11], marker = KEYS[12], meta = KEYS[13],
            cancelled = KEYS[14], children = KEYS[15], outbox = KEYS[16],
            leased = KEYS[1], done = KEYS[2], unique = KEYS[3], counts = KEYS[4], jprefix = KEYS[5],
            config = KEYS[6], minutes = KEYS[7], events = KEYS[8],
            events_max = tonumber(ARGV[3]), defer_trim = true }
local n = tonumber(ARGV[4])
local r = retention(q, tonumber(ARGV[1]), tonumber(ARGV[2]))
local done_ttl_ms, done_max = r.done_ttl_ms, r.done_max

local now = now_ms()
local lim = r.lim   -- read with the retention
local leased_before = lim.concurrency and redis.call('ZCARD', q.leased)
local out = {}
complete_listed(q, ARGV, 5, n, now, r, out)
rearm(q, lim, leased_before)
trim(q, q.done, done_ttl_ms, done_max, now, 2 * n + 10)
flush_counts(q, now)
out[#out + 1] = flush_plan(q)
out[#out + 1] = outboxed
return out
