-- enqueue_plain: (new) -> ready
-- Creates one job without options: no job_id, unique_key, priority, delay or run_at,
-- parents, tags, expiry, lease, backoff or timeout of its own, the engine's default
-- max_attempts (ops.plain_job). It leaves what enqueue.lua leaves for such a job (the same
-- job hash, ready score from the queue's counter, marker, event, lifetime count) without
-- enqueue.lua's option handling: a producer's single enqueue is mostly this job.
-- Durable: yes (with durable writes on, the reply waits for a replica; scripts.py)
-- KEYS[1] rp:{q}:ready      zset  ready jobs                       w
-- KEYS[2] rp:{q}:marker     zset  wake-up marker for claimers       rw
-- KEYS[3] rp:{q}:meta       hash  seq counter, paused flag          rw
-- KEYS[4] rp:{q}:counts     hash  lifetime totals                   w
-- KEYS[5] rp:{q}:job:       prefix of job hashes                    w
-- KEYS[6] rp:{q}:events    stream the queue's event log         w
-- KEYS[7] rp:{q}:config     hash  the queue's limits (no wake-up at the concurrency cap)  r
-- KEYS[8] rp:{q}:leased     zset  leased jobs (against the cap)     r
-- ARGV[1] payload           msgpack
-- ARGV[2] max_attempts      the engine's default
-- ARGV[3] events_max        cap of the event log rp:{q}:events (0 = no events)
-- Returns: the job's number n from the queue's counter: its id is n's text (as for any
--          generated id); n = 1: the counter started from zero, so the caller registers the
--          queue in rp:queues (enqueue.lua's new_queue)
local ready, marker, meta, counts = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local jprefix, events, config, leased = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local payload, max_attempts, events_max = ARGV[1], ARGV[2], ARGV[3]

local seq = redis.call('HINCRBY', meta, 'seq', '1')
local id = num_text(seq)   -- generated ids are numbers (create_job)
redis.call('HSET', jprefix .. id, 'p', payload, 's', 'ready', 'm', max_attempts, 'c', now_text())
if events_max ~= '0' then   -- emit, trimmed at once (enqueue.lua trims in flush_counts)
  redis.call('XADD', events, 'MAXLEN', '~', events_max, '*', 't', 'enqueued', 'j', id, 's', 'ready')
end
-- ready score -priority * PRIORITY_SPAN + seq: priority 0, so the id's text below the span
redis.call('ZADD', ready, seq < PRIORITY_SPAN and id or num_text(seq % PRIORITY_SPAN), id)
-- wake: unless the marker is set already (a backlog, claimers busy): then it changes nothing
if redis.call('EXISTS', marker) == 0 then wake_keys(meta, marker, config, leased) end
redis.call('HINCRBY', counts, 'enqueued', '1')
return seq
