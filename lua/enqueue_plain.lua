-- enqueue_plain: (new) -> ready
-- Creates jobs without options (one, or a batch): no job_id, unique_key, priority, delay
-- or run_at, parents, tags, expiry, lease, backoff or timeout of their own, the engine's
-- default max_attempts (ops.plain_job). It leaves what enqueue.lua leaves for such jobs
-- (the same job hashes, ready scores from the queue's counter, marker, events, lifetime
-- count) without enqueue.lua's option handling: a producer's single enqueue is mostly
-- such a job, and an enqueue_many without options a batch of them.
-- Durable: yes (with durable writes on, the reply waits for a replica; scripts.py)
-- KEYS[1] rp:{q}:ready      zset  ready jobs                       w
-- KEYS[2] rp:{q}:marker     zset  wake-up marker for claimers       rw
-- KEYS[3] rp:{q}:meta       hash  seq counter, paused flag          rw
-- KEYS[4] rp:{q}:counts     hash  lifetime totals                   w
-- KEYS[5] rp:{q}:job:       prefix of job hashes                    w
-- KEYS[6] rp:{q}:events    stream the queue's event log         w
-- KEYS[7] rp:{q}:config     hash  the queue's limits (no wake-up at the concurrency cap)  r
-- KEYS[8] rp:{q}:leased     zset  leased jobs (against the cap)     r
-- ARGV[1] max_attempts      the engine's default
-- ARGV[2] events_max        cap of the event log rp:{q}:events (0 = no events)
-- ARGV[3..] payloads        msgpack, one per job (at least one)
-- Returns: the first job's number n from the queue's counter: the jobs' ids are the texts
--          of n, n + 1, ... in ARGV's order (as for any generated id); n = 1: the counter
--          started from zero, so the caller registers the queue in rp:queues (enqueue.lua's
--          new_queue)
local ready, marker, meta, counts = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local jprefix, events, config, leased = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local max_attempts, events_max = ARGV[1], ARGV[2]
local n = #ARGV - 2

local step = n == 1 and '1' or num_text(n)   -- (a number argument is formatted with %.17g)
local first = redis.call('HINCRBY', meta, 'seq', step) - n + 1
local now = now_text()
local scored = n > 1 and {} or nil   -- a batch's score, id pairs for ready: -priority * PRIORITY_SPAN + seq
for i = 1, n do
  local seq = first + i - 1
  local id = num_text(seq)   -- generated ids are numbers (create_job)
  redis.call('HSET', jprefix .. id, 'p', ARGV[i + 2], 's', 'ready', 'm', max_attempts, 'c', now)
  if events_max == '0' then   -- no events (emit)
  elseif n == 1 then   -- one job: trimmed at once (enqueue.lua trims in flush_counts)
    redis.call('XADD', events, 'MAXLEN', '~', events_max, '*', 't', 'enqueued', 'j', id, 's', 'ready')
  else
    redis.call('XADD', events, '*', 't', 'enqueued', 'j', id, 's', 'ready')
  end
  local score = seq < PRIORITY_SPAN and id or num_text(seq % PRIORITY_SPAN)
  if scored then
    scored[2 * i - 1] = score
    scored[2 * i] = id
  else
    redis.call('ZADD', ready, score, id)   -- (priority 0)
  end
end
if scored then
  for j = 1, #scored, 2000 do
    redis.call('ZADD', ready, unpack(scored, j, math.min(j + 1999, #scored)))
  end
  if events_max ~= '0' then redis.call('XTRIM', events, 'MAXLEN', '~', events_max) end
end
-- wake: unless the marker is set already (a backlog, claimers busy): then it changes nothing
if redis.call('EXISTS', marker) == 0 then wake_keys(meta, marker, config, leased) end
redis.call('HINCRBY', counts, 'enqueued', step)
return first
