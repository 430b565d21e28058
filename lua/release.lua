-- release: leased -> ready
-- Gives a leased job back without counting the attempt (graceful shutdown), only if the
-- token still holds a live lease.
-- At maxmemory: runs (its first write is one Redis allows there; scripts.py)
-- KEYS[1] rp:{q}:ready      zset  ready jobs                       w
-- KEYS[2] rp:{q}:leased     zset  leased jobs by expiry            rw
-- KEYS[3] rp:{q}:marker     zset  wake-up marker for claimers       w
-- KEYS[4] rp:{q}:meta       hash  seq counter, paused flag          rw
-- KEYS[5] rp:{q}:job:       prefix of job hashes                    rw
-- KEYS[6] rp:{q}:events    stream the queue's event log         w
-- ARGV[1] id                job id
-- ARGV[2] token             fencing token of the lease
-- ARGV[3] events_max        cap of the event log rp:{q}:events (0 = no events)
-- Returns: 1 released
-- Errors: LEASE_LOST when the token does not hold a live lease
local q = { ready = KEYS[1], leased = KEYS[2], marker = KEYS[3], meta = KEYS[4], jprefix = KEYS[5], events = KEYS[6],
            events_max = tonumber(ARGV[3]) }
local id, token = ARGV[1], ARGV[2]

local now = now_ms()
if not held(q, id, token, now) then return redis.error_reply('LEASE_LOST job ' .. id .. ' is not leased with that token any more') end
requeue(q, id, next_seq(q, 1), now, true)
emit(q, 'released', id)
set_marker(q)
return 1
