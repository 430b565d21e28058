-- enqueue: (new) -> ready | scheduled | waiting
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
-- KEYS[9] rp:{q}:waiting    zset  jobs waiting for parents          rw
-- KEYS[10] rp:{q}:children: prefix of parents' child sets           rw
-- KEYS[11] rp:{q}:cancelled zset  cancelled jobs (a parent already failed)  w
-- KEYS[12] rp:{q}:config    hash  the queue's limits (no wake-up at the concurrency cap)  r
-- KEYS[13] rp:{q}:leased    zset  leased jobs (against the cap)     r
-- KEYS[14] rp:{q}:expiring  zset  jobs with an expiry, by it (for the sweeper)  w
-- KEYS[15] rp:{q}:linking   zset  jobs with parents in other queues, to link again  w
-- ARGV[1] n                 number of jobs
-- ARGV[2] m                 number of option sets: 1 (every job has the same options) or n
--                           (job i has set i)
-- ARGV[3] events_max        cap of the event log rp:{q}:events (0 = no events)
-- ARGV[4..] m option sets of 12 values: job_id ('' = generate; with m = 1 only when
--           n = 1), unique_key ('' = none; likewise), priority, delay_ms (-1 = none),
--           run_at_ms (-1 = none), max_attempts, lease_ms (0 = worker's), backoff_base_ms
--           (0 = engine's), backoff_cap_ms (0 = engine's), timeout_ms (0 = the worker's),
--           expires_at_ms (0 = none: see lib's expire_unclaimed), tags (JSON, '' = none);
--           then the n payloads (msgpack); then, only for jobs with dependencies, per job:
--           mode ('all' | 'any'; '' = none), k, and k parents as queue, id pairs (a job with
--           a mode waits; parents of this queue are linked here, those of other queues by
--           the caller, link.lua, and again by the scheduler from rp:{q}:linking)
--           A parent of this queue may be a job of this batch with its own job_id, earlier
--           in the batch (workflows create a graph's nodes of one queue in one call).
-- Errors: NOT_FOUND when a parent of this queue does not exist (nothing written)
-- Returns: flat array of id, created (1 new, 0 existing) per job, then new_queue (1: the
--          queue's counter started from zero, so the caller registers it in rp:queues)
--          and scheduler_at, sweeper_at (ms for ZADD rp:due:<daemon> LT, -1 = none; see
--          flush_plan; sweeper_at: a job's expiry)
local q = { ready = KEYS[1], scheduled = KEYS[2], marker = KEYS[3], meta = KEYS[4],
            unique = KEYS[5], counts = KEYS[6], jprefix = KEYS[7], events = KEYS[8],
            waiting = KEYS[9], children = KEYS[10], cancelled = KEYS[11],
            config = KEYS[12], leased = KEYS[13], expiring = KEYS[14], linking = KEYS[15],
            events_max = tonumber(ARGV[3]), defer_trim = true }
local OPTS = 12   -- values per option set
local n = tonumber(ARGV[1])

local now = now_ms()
local out = {}
local became_ready = false
local scheduled_ids = {}
local seq = next_seq(q, n)   -- one counter number per job: its id if generated, its place in ready
local ready = {}             -- score, id pairs, added with one ZADD per 1000 jobs
local m = tonumber(ARGV[2])
local first_payload = 4 + m * OPTS
local o, id_arg, ukey_arg
local function options(b)
  local delay_ms, run_at = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  if delay_ms >= 0 then run_at = now + delay_ms end
  o = { priority = tonumber(ARGV[b + 2]), run_at = run_at, delay_ms = delay_ms, max_attempts = ARGV[b + 5],
        lease_ms = ARGV[b + 6], backoff_base_ms = ARGV[b + 7], backoff_cap_ms = ARGV[b + 8],
        timeout_ms = ARGV[b + 9], expires_at_ms = ARGV[b + 10], tags = ARGV[b + 11] }
  id_arg, ukey_arg = ARGV[b], ARGV[b + 1]
end
-- dependencies: every parent of this queue must exist before anything is written
local name = queue_name(q)
local deps = {}
local d_at = first_payload + n
local batch = {}   -- job_id given in this batch -> its position
if m ~= 1 and ARGV[d_at] then
  for i = 0, n - 1 do
    local jid = ARGV[4 + i * OPTS]
    if jid ~= '' and batch[jid] == nil then batch[jid] = i end
  end
end
if ARGV[d_at] then
  for i = 0, n - 1 do
    local mode, k = ARGV[d_at], tonumber(ARGV[d_at + 1])
    local parents = {}
    for j = 1, k do
      local pq, pid = ARGV[d_at + 2 * j], ARGV[d_at + 2 * j + 1]
      parents[j] = { pq, pid }
      if pq == name and not (batch[pid] and batch[pid] < i) and redis.call('EXISTS', q.jprefix .. pid) == 0 then
        return redis.error_reply('NOT_FOUND no parent job ' .. pid .. ' in queue ' .. pq)
      end
    end
    if mode ~= '' then deps[i] = { mode = mode, parents = parents } end
    d_at = d_at + 2 + 2 * k
  end
end
-- Link waiting job `id` to its parents of this queue; a parent already finished counts now.
-- One with parents in other queues is listed in rp:{q}:linking (their links are the caller's;
-- the scheduler's visit LINK_GRACE_MS later links it again, Engine._relink).
local LINK_GRACE_MS = 5000   -- base.LINK_GRACE_S
local function link_parents(id, d)
  local jkey = q.jprefix .. id
  redis.call('HSET', jkey, 'dm', d.mode, 'dt', #d.parents, 'dep', cjson.encode(d.parents))
  local foreign = false
  for _, p in ipairs(d.parents) do
    if p[1] == name then
      local ps = redis.call('HGET', q.jprefix .. p[2], 's')
      if TERMINAL[ps] then
        resolve(q, id, name .. '/' .. p[2], ps, now, false)
      else
        redis.call('SADD', q.children .. p[2], name .. '\n' .. id)
      end
    else
      foreign = true
    end
  end
  if foreign then
    redis.call('ZADD', q.linking, now, id)
    plan('scheduler_at', now + LINK_GRACE_MS)
  end
end
if m == 1 then options(4) end
for i = 0, n - 1 do
  if m ~= 1 then options(4 + i * OPTS) end
  o.payload = ARGV[first_payload + i]
  o.waiting = deps[i] ~= nil
  local id, created, state = create_job(q, id_arg, ukey_arg, o, now, seq + i, ready)
  if created then
    if state == 'ready' then became_ready = true elseif state == 'scheduled' then scheduled_ids[id] = true end
    if deps[i] then link_parents(id, deps[i]) end
  end
  out[#out + 1] = id
  out[#out + 1] = created and 1 or 0
end
for j = 1, #ready, 2000 do
  redis.call('ZADD', q.ready, unpack(ready, j, math.min(j + 1999, #ready)))
end
-- wake: unless the marker is set already (a backlog, claimers busy): then it changes nothing
if became_ready and redis.call('EXISTS', q.marker) == 0 then wake(q) end
if next(scheduled_ids) then
  local first = redis.call('ZRANGE', q.scheduled, 0, 0)
  if scheduled_ids[first[1]] then redis.call('ZADD', q.marker, 0, MARKER) end
end
flush_counts(q, now)
out[#out + 1] = seq == 1 and 1 or 0
local scheduler_at, sweeper_at = flush_plan(q)
out[#out + 1] = scheduler_at
out[#out + 1] = sweeper_at
return out
