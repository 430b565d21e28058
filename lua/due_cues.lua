-- due_cues: (read only)
-- Lists the cues whose next fire time has come, for the scheduler to fire.
-- KEYS[1] rp:{q}:cues       hash  cue name -> definition (JSON)     r
-- KEYS[2] rp:{q}:cue_next   zset  active cue names by next fire ms  r
-- ARGV[1] limit             most cues returned
-- Returns: now_ms, the earliest next fire ms of any active cue (-1 if none), then
--          name, definition, next fire ms per due cue (earliest first)
local cues, cue_next, limit = KEYS[1], KEYS[2], tonumber(ARGV[1])

local now = now_ms()
local out = { now, first_score(cue_next) or -1 }
local due = redis.call('ZRANGEBYSCORE', cue_next, '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
for i = 1, #due, 2 do
  out[#out + 1] = due[i]
  out[#out + 1] = redis.call('HGET', cues, due[i]) or ''
  out[#out + 1] = due[i + 1]
end
return out
