-- beat_worker: registered -> registered (refreshed)
-- Refreshes a worker's heartbeat with the server clock, replaces its list of jobs in
-- progress (ARGV[2]) or changes it (ARGV[6], ARGV[7]: what HTTP workers' servers send, so
-- that every server replica edits one list; expired leases drop out), adds to its processed/failed counters and, given a queue, adds it to the
-- queues it is registered for (the sweeper takes back leases there too). A worker that is not registered
-- (the sweeper removed its expired registration, or Redis lost it) is left alone: the
-- caller registers again.
-- KEYS[1] rp:{#workers}:index   zset  worker ids by last heartbeat (ms)   w
-- KEYS[2] rp:{#workers}:w:<id>  hash  this worker's registration          rw
-- ARGV[1] worker_id         string
-- ARGV[2] jobs              JSON array of the jobs in progress
-- ARGV[3] processed         jobs finished since the last beat (delta)
-- ARGV[4] failed            jobs failed since the last beat (delta)
-- ARGV[5] queue             a queue it works on ('' for none)
-- ARGV[6] taken             JSON object {job: lease expiry ms} of leases taken or extended ('' for none)
-- ARGV[7] settled           JSON array of jobs it no longer holds ('' for none)
-- Returns: now_ms, or 0 when the worker is not registered
local index, wkey = KEYS[1], KEYS[2]
local worker, jobs = ARGV[1], ARGV[2]
local processed, failed = tonumber(ARGV[3]), tonumber(ARGV[4])

if redis.call('EXISTS', wkey) == 0 then
  redis.call('ZREM', index, worker)
  return 0
end
local now = now_ms()
if jobs ~= '' then
  redis.call('HSET', wkey, 'beat', now, 'jobs', jobs)
else
  local held = cjson.decode(redis.call('HGET', wkey, 'held') or '{}')
  if ARGV[6] ~= '' then
    for job, expires in pairs(cjson.decode(ARGV[6])) do held[job] = expires end
  end
  if ARGV[7] ~= '' then
    for _, job in ipairs(cjson.decode(ARGV[7])) do held[job] = nil end
  end
  local kept, list = {}, {}
  for job, expires in pairs(held) do
    if tonumber(expires) >= now then
      kept[job] = expires
      table.insert(list, job)
    end
  end
  table.sort(list)
  -- cjson encodes an empty table as {}: both fields are written by hand when empty
  redis.call('HSET', wkey, 'beat', now, 'held', next(kept) and cjson.encode(kept) or '{}',
             'jobs', #list > 0 and cjson.encode(list) or '[]')
end
if processed ~= 0 then redis.call('HINCRBY', wkey, 'processed', processed) end
if failed ~= 0 then redis.call('HINCRBY', wkey, 'failed', failed) end
if ARGV[5] ~= nil and ARGV[5] ~= '' then
  local queues = cjson.decode(redis.call('HGET', wkey, 'queues') or '[]')
  local known = false
  for _, q in ipairs(queues) do
    if q == ARGV[5] then known = true end
  end
  if not known then
    table.insert(queues, ARGV[5])
    redis.call('HSET', wkey, 'queues', cjson.encode(queues))
  end
end
redis.call('ZADD', index, now, worker)
return now
