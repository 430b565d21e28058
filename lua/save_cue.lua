-- save_cue: cue definition -> cue definition (add, replace, pause, resume)
-- Compare-and-set of one cue: writes the definition and next fire time only if the
-- stored definition is still the one the caller read, so concurrent edits and fires
-- cannot interleave.
-- KEYS[1] rp:{q}:cues       hash  cue name -> definition (JSON)     rw
-- KEYS[2] rp:{q}:cue_next   zset  active cue names by next fire ms  w
-- KEYS[3] rp:{q}:meta       hash  seq counter, the daemons' planned times  rw
-- ARGV[1] name              cue name
-- ARGV[2] expected          the definition read before ('' = the cue must not exist)
-- ARGV[3] definition        the new definition (JSON)
-- ARGV[4] next_ms           next fire time (-1 = paused: not in cue_next)
-- Returns: { saved, new_queue, scheduler_at }: saved 1, or 0 when the cue changed since
--          it was read (nothing written); new_queue 1 when the queue had no meta hash (the
--          caller registers it in rp:queues); scheduler_at the ms for
--          ZADD rp:due:scheduler LT (-1 = none; see flush_plan)
local cues, cue_next = KEYS[1], KEYS[2]
local q = { meta = KEYS[3] }
local name, expected, def, next_ms = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])

if (redis.call('HGET', cues, name) or '') ~= expected then return { 0, 0, -1 } end
local new_queue = redis.call('HSETNX', q.meta, 'seq', 0)
redis.call('HSET', cues, name, def)
if next_ms < 0 then
  redis.call('ZREM', cue_next, name)
else
  redis.call('ZADD', cue_next, next_ms, name)
  plan('scheduler_at', next_ms)
end
return { 1, new_queue, flush_plan(q) }
