-- register_worker: (unregistered) -> registered
-- Records a worker process in the registry, stamped with the server clock as its start
-- and first heartbeat, counters at zero. A registration under the same id is replaced.
-- At maxmemory: runs (its first write is one Redis allows there; scripts.py)
-- KEYS[1] rp:{#workers}:index   zset  worker ids by last heartbeat (ms)   w
-- KEYS[2] rp:{#workers}:w:<id>  hash  this worker's registration          w
-- ARGV[1] worker_id         string
-- ARGV[2] host              string
-- ARGV[3] pid               integer
-- ARGV[4] queues            JSON array of queue names
-- Returns: now_ms, the registration time
local index, wkey = KEYS[1], KEYS[2]
local worker, host, pid, queues = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local now = now_ms()
redis.call('DEL', wkey)
redis.call('HSET', wkey, 'host', host, 'pid', pid, 'queues', queues, 'started', now,
           'beat', now, 'jobs', '[]', 'processed', 0, 'failed', 0)
redis.call('ZADD', index, now, worker)
return now
