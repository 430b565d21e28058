-- enqueue: (new) -> ready | scheduled
-- Creates a batch of jobs. A job whose job_id exists already, or whose unique_key is held
-- by an unfinished job, is not created: the existing id is returned instead.
-- Durable: yes (with durable writes on, the reply waits for a replica; scripts.py)
-- KEYS[1] rp:{q}:ready      zset  ready jobs                       rw
-- KEYS[2] rp:{q}:scheduled  zset  delayed jobs by run time          rw
-- KEYS[3] rp:{q}:marker     zset  wake-up marker for claimers       w
-- KEYS[4] rp:{q}:meta       hash  seq counter, paused flag          rw
-- KEYS[5] rp:{q}:unique     hash  unique_key -> job id              rw
-- KEYS[6] rp:{q}:counts     hash  lifetime totals                   w
-- KEYS[7] rp:{q}:job:       prefix of job hashes                    rw
-- KEYS[8] rp:{q}:events    stream the queue's event log         w
-- ARGV[1] n                 number of jobs
-- ARGV[2] m                 number of option sets: 1 (every job has the same options) or n
--                           (job i has set i)
-- ARGV[3] events_max        cap of the event log rp:{q}:events (0 = no events)
-- ARGV[4..] m option sets of 10 values: job_id ('' = generate; with m = 1 only when
--           n = 1), unique_key ('' = none; likewise), priority, delay_ms (-1 = none),
--           run_at_ms (-1 = none), max_attempts, lease_ms (0 = worker's), backoff_base_ms
--           (0 = engine's), backoff_cap_ms (0 = engine's), timeout_ms (0 = the worker's);
--           then the n payloads (msgpack)
-- Returns: flat array of id, created (1 new, 0 existing) per job, then new_queue (1: the
--          queue's counter started from zero, so the caller registers it in rp:queues)
--          and scheduler_at (ms for ZADD rp:due:scheduler LT, -1 = none; see flush_plan)
local q = { ready = KEYS[1], scheduled = KEYS[2], marker = KEYS[3], meta = KEYS[4],
            unique = KEYS[5], counts = KEYS[6], jprefix = KEYS[7], events = KEYS[8],
            events_max = tonumber(ARGV[3]) }
local n = tonumber(ARGV[1])

local now = now_ms()
local out = {}
local became_ready = false
local scheduled_ids = {}
local seq = next_seq(q, n)   -- one counter number per job: its id if generated, its place in ready
local ready = {}             -- score, id pairs, added with one ZADD per 1000 jobs
local m = tonumber(ARGV[2])
local first_payload = 4 + m * 10
local o, id_arg, ukey_arg
local function options(b)
  local delay_ms, run_at = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  if delay_ms >= 0 then run_at = now + delay_ms end
  o = { priority = tonumber(ARGV[b + 2]), run_at = run_at, max_attempts = ARGV[b + 5],
        lease_ms = ARGV[b + 6], backoff_base_ms = ARGV[b + 7], backoff_cap_ms = ARGV[b + 8],
        timeout_ms = ARGV[b + 9] }
  id_arg, ukey_arg = ARGV[b], ARGV[b + 1]
end
if m == 1 then options(4) end
for i = 0, n - 1 do
  if m ~= 1 then options(4 + i * 10) end
  o.payload = ARGV[first_payload + i]
  local id, created, state = create_job(q, id_arg, ukey_arg, o, now, seq + i, ready)
  if created then
    if state == 'ready' then became_ready = true else scheduled_ids[id] = true end
  end
  out[#out + 1] = id
  out[#out + 1] = created and 1 or 0
end
for j = 1, #ready, 2000 do
  redis.call('ZADD', q.ready, unpack(ready, j, math.min(j + 1999, #ready)))
end
if became_ready then wake(q) end
if next(scheduled_ids) then
  local first = redis.call('ZRANGE', q.scheduled, 0, 0)
  if scheduled_ids[first[1]] then redis.call('ZADD', q.marker, 0, MARKER) end
end
flush_counts(q, now)
out[#out + 1] = seq == 1 and 1 or 0
out[#out + 1] = flush_plan(q)
return out
