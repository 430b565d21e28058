-- enqueue: (new) -> ready | scheduled
-- Creates a batch of jobs. A job whose job_id exists already, or whose unique_key is held
-- by an unfinished job, is not created: the existing id is returned instead.
-- KEYS[1] rp:{q}:ready      zset  ready jobs                       rw
-- KEYS[2] rp:{q}:scheduled  zset  delayed jobs by run time          rw
-- KEYS[3] rp:{q}:marker     zset  wake-up marker for claimers       w
-- KEYS[4] rp:{q}:meta       hash  seq counter, paused flag          rw
-- KEYS[5] rp:{q}:unique     hash  unique_key -> job id              rw
-- KEYS[6] rp:{q}:counts     hash  lifetime totals                   w
-- KEYS[7] rp:{q}:job:       prefix of job hashes                    rw
-- ARGV[1] n                 number of jobs
-- ARGV[2..] per job, 10 values: payload, job_id ('' = generate), unique_key ('' = none),
--           priority, delay_ms (-1 = none), run_at_ms (-1 = none), max_attempts,
--           lease_ms (0 = worker's), backoff_base_ms (0 = engine's), backoff_cap_ms (0 = engine's)
-- Returns: flat array of id, created (1 new, 0 existing) per job
local q = { ready = KEYS[1], scheduled = KEYS[2], marker = KEYS[3], meta = KEYS[4],
            unique = KEYS[5], counts = KEYS[6], jprefix = KEYS[7] }
local n = tonumber(ARGV[1])

local now = now_ms()
local out = {}
local became_ready = false
local scheduled_ids = {}
for i = 0, n - 1 do
  local b = 2 + i * 10
  local delay_ms, run_at = tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5])
  if delay_ms >= 0 then run_at = now + delay_ms end
  local o = { payload = ARGV[b], priority = tonumber(ARGV[b + 3]), run_at = run_at,
              max_attempts = ARGV[b + 6], lease_ms = ARGV[b + 7],
              backoff_base_ms = ARGV[b + 8], backoff_cap_ms = ARGV[b + 9] }
  local id, created, state = create_job(q, ARGV[b + 1], ARGV[b + 2], o, now)
  if created then
    if state == 'ready' then became_ready = true else scheduled_ids[id] = true end
  end
  out[#out + 1] = id
  out[#out + 1] = created and 1 or 0
end
if became_ready then wake(q) end
if next(scheduled_ids) then
  local first = redis.call('ZRANGE', q.scheduled, 0, 0)
  if scheduled_ids[first[1]] then redis.call('ZADD', q.marker, 0, 'm') end
end
flush_counts(q)
return out
