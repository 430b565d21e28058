-- deregister_worker: registered -> (unregistered)
-- Removes a worker's registration (on a clean stop, or by the sweeper once it expired).
-- At maxmemory: runs (its first write is one Redis allows there; scripts.py)
-- KEYS[1] rp:{#workers}:index   zset  worker ids by last heartbeat (ms)   w
-- KEYS[2] rp:{#workers}:w:<id>  hash  this worker's registration          w
-- ARGV[1] worker_id         string
-- Returns: 1 if the worker was registered, else 0
local index, wkey = KEYS[1], KEYS[2]
local worker = ARGV[1]

local removed = redis.call('ZREM', index, worker)
local deleted = redis.call('DEL', wkey)
return (removed + deleted) > 0 and 1 or 0
