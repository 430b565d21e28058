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
  local payload, id, ukey = ARGV[b], ARGV[b + 1], ARGV[b + 2]
  local priority, delay_ms, run_at_ms = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5])
  local existing = false
  if ukey ~= '' then
    existing = redis.call('HGET', q.unique, ukey)
    if existing then
      local state = redis.call('HGET', q.jprefix .. existing, 's')
      if not state or TERMINAL[state] then existing = false end
    end
  end
  if not existing and id ~= '' and redis.call('EXISTS', q.jprefix .. id) == 1 then existing = id end
  if existing then
    out[#out + 1] = existing
    out[#out + 1] = 0
  else
    local seq
    if id == '' then
      repeat
        seq = next_seq(q, 1)
        id = tostring(seq)
      until redis.call('EXISTS', q.jprefix .. id) == 0
    end
    local run_at = -1
    if delay_ms >= 0 then run_at = now + delay_ms elseif run_at_ms >= 0 then run_at = run_at_ms end
    local state = run_at > now and 'scheduled' or 'ready'
    local fields = { 'p', payload, 's', state, 'm', ARGV[b + 6], 'c', now }
    if priority ~= 0 then fields[#fields + 1] = 'r'; fields[#fields + 1] = priority end
    if ARGV[b + 7] ~= '0' then fields[#fields + 1] = 'l'; fields[#fields + 1] = ARGV[b + 7] end
    if ARGV[b + 8] ~= '0' then fields[#fields + 1] = 'bb'; fields[#fields + 1] = ARGV[b + 8] end
    if ARGV[b + 9] ~= '0' then fields[#fields + 1] = 'bc'; fields[#fields + 1] = ARGV[b + 9] end
    if ukey ~= '' then
      fields[#fields + 1] = 'k'; fields[#fields + 1] = ukey
      redis.call('HSET', q.unique, ukey, id)
    end
    redis.call('HSET', q.jprefix .. id, unpack(fields))
    if state == 'ready' then
      seq = seq or next_seq(q, 1)
      redis.call('ZADD', q.ready, -priority * PRIORITY_SPAN + (seq % PRIORITY_SPAN), id)
      became_ready = true
    else
      redis.call('ZADD', q.scheduled, run_at, id)
      scheduled_ids[id] = true
    end
    count('enqueued', 1)
    out[#out + 1] = id
    out[#out + 1] = 1
  end
end
if became_ready then set_marker(q) end
if next(scheduled_ids) then
  local first = redis.call('ZRANGE', q.scheduled, 0, 0)
  if scheduled_ids[first[1]] then redis.call('ZADD', q.marker, 0, 'm') end
end
flush_counts(q)
return out
