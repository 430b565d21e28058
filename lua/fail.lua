-- fail: leased -> scheduled (retry) | dead (children: waiting -> cancelled)
-- Fails a batch of leased jobs, each only if its token still holds a live lease. A job
-- with attempts left and retry on is scheduled after its delay (or exponential backoff
-- with jitter); otherwise it is dead. Records the error of the attempt on the job. When
-- the queue's concurrency cap was reached, a freed slot wakes a blocked claimer.
-- Durable: yes (with durable writes on, the reply waits for a replica; scripts.py)
-- At maxmemory: runs (its first write is one Redis allows there; scripts.py)
-- KEYS[1] rp:{q}:leased     zset  leased jobs by expiry            rw
-- KEYS[2] rp:{q}:scheduled  zset  delayed jobs by run time          w
-- KEYS[3] rp:{q}:dead       zset  dead jobs by finish time         rw
-- KEYS[4] rp:{q}:marker     zset  wake-up marker for claimers       w
-- KEYS[5] rp:{q}:unique     hash  unique_key -> job id              rw
-- KEYS[6] rp:{q}:counts     hash  lifetime totals                   w
-- KEYS[7] rp:{q}:job:       prefix of job hashes                    rw
-- KEYS[8] rp:{q}:config     hash  the queue's stored retention (wins over ARGV) and limits  r
-- KEYS[9] rp:{q}:meta       hash  the daemons' planned times        rw
-- KEYS[10] rp:{q}:minutes   hash  jobs done / failed per minute     w
-- KEYS[11] rp:{q}:events   stream the queue's event log         w
-- KEYS[12] rp:{q}:waiting    zset  jobs waiting for parents          rw
-- KEYS[13] rp:{q}:ready      zset  ready jobs (released children)   w
-- KEYS[14] rp:{q}:cancelled  zset  cancelled jobs (children of failed parents)  w
-- KEYS[15] rp:{q}:children:  prefix of parents' child sets           rw
-- KEYS[16] rp:{q}:outbox     zset  parents' outcomes for children in other queues  w
-- ARGV[1] dead_ttl_ms       keep dead jobs this long (default)
-- ARGV[2] dead_max          keep at most this many dead jobs (default)
-- ARGV[3] backoff_base_ms   engine default backoff base
-- ARGV[4] backoff_cap_ms    engine default backoff cap
-- ARGV[5] seed              random seed for the jitter
-- ARGV[6] events_max        cap of the event log rp:{q}:events (0 = no events)
-- ARGV[7] n                 number of jobs
-- ARGV[8..] per job: id, token, error, retry (1/0), delay_ms (-1 = backoff)
-- Returns: array of the new state ('scheduled' or 'dead') or 0 (lease lost) per job, then
--          scheduler_at (ms for ZADD rp:due:scheduler LT, -1 = none; see flush_plan) and
--          outboxed (1: entries for children in other queues, see complete)
local q = { waiting = KEYS[12], ready = KEYS[13], cancelled = KEYS[14], children = KEYS[15],
            outbox = KEYS[16],
            leased = KEYS[1], scheduled = KEYS[2], dead = KEYS[3], marker = KEYS[4],
            unique = KEYS[5], counts = KEYS[6], jprefix = KEYS[7], config = KEYS[8],
            meta = KEYS[9], minutes = KEYS[10], events = KEYS[11],
            events_max = tonumber(ARGV[6]) }
local r = retention(q, nil, nil, tonumber(ARGV[1]), tonumber(ARGV[2]))
local dead_ttl_ms, dead_max = r.dead_ttl_ms, r.dead_max
local base_ms, cap_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
math.randomseed(tonumber(ARGV[5]))
local n = tonumber(ARGV[7])

local now = now_ms()
local lim = r.lim   -- read with the retention
local leased_before = lim.concurrency and redis.call('ZCARD', q.leased)
local out = {}
fail_listed(q, ARGV, 8, n, base_ms, cap_ms, now, out)
rearm(q, lim, leased_before)
trim(q, q.dead, dead_ttl_ms, dead_max, now, 2 * n + 10)
flush_counts(q, now)
out[#out + 1] = flush_plan(q)
out[#out + 1] = outboxed
return out
