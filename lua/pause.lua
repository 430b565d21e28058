-- pause: queue -> paused
-- Stops the queue from handing out jobs; enqueueing still works. The pause's time and
-- reason are kept (meta paused_at, paused_reason) until the queue is resumed.
-- At maxmemory: runs (its first write is one Redis allows there; scripts.py)
-- KEYS[1] rp:{q}:meta       hash  paused flag, paused_at (ms), paused_reason  w
-- KEYS[2] rp:{q}:marker     zset  wake-up marker for claimers       w
-- KEYS[3] rp:{q}:events    stream the queue's event log         w
-- ARGV[1] events_max        cap of the event log rp:{q}:events (0 = no events)
-- ARGV[2] reason            why ('' = none given)
-- Returns: 1 if the queue was running, 0 if it was paused already
local q = { meta = KEYS[1], marker = KEYS[2], events = KEYS[3],
            events_max = tonumber(ARGV[1]) }

redis.call('ZREM', q.marker, MARKER)
local was_running = redis.call('HSET', q.meta, 'paused', 1)
if was_running == 1 then
  redis.call('HSET', q.meta, 'paused_at', now_ms())
  if ARGV[2] ~= '' then redis.call('HSET', q.meta, 'paused_reason', ARGV[2]) end
  emit(q, 'paused', '')
end
return was_running
