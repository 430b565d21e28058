-- beat_worker: registered -> registered (refreshed)
-- Refreshes a worker's heartbeat with the server clock, replaces its list of jobs in
-- progress, adds to its processed/failed counters and, given a queue, adds it to the
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
-- Returns: now_ms, or 0 when the worker is not registered
local index, wkey = KEYS[1], KEYS[2]
local worker, jobs = ARGV[1], ARGV[2]
local processed, failed = tonumber(ARGV[3]), tonumber(ARGV[4])

if redis.call('EXISTS', wkey) == 0 then
  redis.call('ZREM', index, worker)
  return 0
end
local now = now_ms()
redis.call('HSET', wkey, 'beat', now, 'jobs', jobs)
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
