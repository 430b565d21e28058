-- stats: (read only)
-- Counts per state, the paused flag, the lifetime totals and the wait of the oldest
-- ready job: the head of each priority band is its oldest, so this visits one job per
-- band (at most 100 bands).
-- KEYS[1] rp:{q}:scheduled  zset                                   r
-- KEYS[2] rp:{q}:ready      zset                                   r
-- KEYS[3] rp:{q}:leased     zset                                   r
-- KEYS[4] rp:{q}:done       zset                                   r
-- KEYS[5] rp:{q}:dead       zset                                   r
-- KEYS[6] rp:{q}:cancelled  zset                                   r
-- KEYS[7] rp:{q}:meta       hash  paused flag                      r
-- KEYS[8] rp:{q}:counts     hash  lifetime totals                   r
-- KEYS[9] rp:{q}:job:       prefix of job hashes                    r
-- KEYS[10] rp:{q}:config    hash  the queue's stored settings       r
-- KEYS[11] rp:{q}:waiting   zset  jobs waiting for parents          r
-- Returns: array: six counts (in KEYS order), paused (1/0), latency_ms, now_ms, the
--          config hash as one array of name, value pairs, the waiting count, then the
--          counts hash as name, value pairs
local q = { ready = KEYS[2], meta = KEYS[7], counts = KEYS[8], jprefix = KEYS[9], config = KEYS[10],
            waiting = KEYS[11] }

local now = now_ms()
local out = {}
for i = 1, 6 do out[i] = redis.call('ZCARD', KEYS[i]) end
out[7] = redis.call('HEXISTS', q.meta, 'paused')
local oldest = now
local head = redis.call('ZRANGE', q.ready, 0, 0, 'WITHSCORES')
local bands = 0
while head[1] and bands < 100 do
  local f = redis.call('HMGET', q.jprefix .. head[1], 'u', 'c')
  local since = tonumber(f[1] or f[2] or now)
  if since < oldest then oldest = since end
  local band_end = (math.floor(tonumber(head[2]) / PRIORITY_SPAN) + 1) * PRIORITY_SPAN
  head = redis.call('ZRANGEBYSCORE', q.ready, band_end, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  bands = bands + 1
end
out[8] = now - oldest
out[9] = now
out[10] = redis.call('HGETALL', q.config)
out[11] = redis.call('ZCARD', q.waiting)
for _, v in ipairs(redis.call('HGETALL', q.counts)) do out[#out + 1] = v end
return out
