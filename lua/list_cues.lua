-- list_cues: (read only)
-- Reads one cue or all cues of a queue, with the server time to judge them by.
-- KEYS[1] rp:{q}:cues       hash  cue name -> definition (JSON)     r
-- KEYS[2] rp:{q}:cue_next   zset  active cue names by next fire ms  r
-- ARGV[1] name              one cue ('' = every cue of the queue)
-- Returns: now_ms, then name, definition, next fire ms (false when paused) per cue
local cues, cue_next, name = KEYS[1], KEYS[2], ARGV[1]

local out = { now_ms() }
local names
if name ~= '' then names = { name } else names = redis.call('HKEYS', cues) end
for _, n in ipairs(names) do
  local def = redis.call('HGET', cues, n)
  if def then
    out[#out + 1] = n
    out[#out + 1] = def
    out[#out + 1] = redis.call('ZSCORE', cue_next, n)
  end
end
return out
