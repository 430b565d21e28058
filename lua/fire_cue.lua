-- fire_cue: cue (due) -> (new) ready jobs, cue's next fire time moved on
-- Fires a cue once per given fire time, as a compare-and-set on its stored next fire
-- time and definition: of several schedulers that read the same due cue, one fires it
-- and the others change nothing. Each job's id is cue:<name>:<fire ms>, so even a
-- repeated fire could not create a second job for one fire time. Each job created is
-- logged in the cue's run log ("<fire ms>:<job id>", newest first, capped).
-- KEYS[1] rp:{q}:cues       hash  cue name -> definition (JSON)     rw
-- KEYS[2] rp:{q}:cue_next   zset  active cue names by next fire ms  rw
-- KEYS[3] rp:{q}:ready      zset  ready jobs                       w
-- KEYS[4] rp:{q}:scheduled  zset  delayed jobs by run time          r
-- KEYS[5] rp:{q}:marker     zset  wake-up marker for claimers       w
-- KEYS[6] rp:{q}:meta       hash  seq counter, paused flag          rw
-- KEYS[7] rp:{q}:unique     hash  unique_key -> job id              r
-- KEYS[8] rp:{q}:counts     hash  lifetime totals                   w
-- KEYS[9] rp:{q}:job:       prefix of job hashes                    rw
-- KEYS[10] rp:{q}:events   stream the queue's event log         w
-- KEYS[11] rp:{q}:cue_runs: prefix of each cue's run log (list)   w
-- ARGV[1] name              cue name
-- ARGV[2] expected_def      the definition the caller read
-- ARGV[3] expected_next_ms  the next fire time the caller read
-- ARGV[4] new_def           the definition to store (last fire time updated)
-- ARGV[5] new_next_ms       the cue's next fire time after this fire
-- ARGV[6] payload           job payload (msgpack)
-- ARGV[7] priority          job priority
-- ARGV[8] max_attempts      job max attempts
-- ARGV[9] lease_ms          job lease (0 = the worker's)
-- ARGV[10] events_max       cap of the event log rp:{q}:events (0 = no events)
-- ARGV[11] timeout_ms       job timeout (0 = the worker's)
-- ARGV[12] runs_max         entries the cue's run log keeps
-- ARGV[13..] fire_ms        one job per fire time
-- Returns: number of jobs created, or -1 when another scheduler fired first or the cue
--          was changed or removed (nothing written)
local q = { cues = KEYS[1], cue_next = KEYS[2], ready = KEYS[3], scheduled = KEYS[4],
            marker = KEYS[5], meta = KEYS[6], unique = KEYS[7], counts = KEYS[8],
            jprefix = KEYS[9], events = KEYS[10],
            events_max = tonumber(ARGV[10]) }
local name = ARGV[1]

if redis.call('HGET', q.cues, name) ~= ARGV[2] then return -1 end
local stored = redis.call('ZSCORE', q.cue_next, name)
if not stored or tonumber(stored) ~= tonumber(ARGV[3]) then return -1 end

local now = now_ms()
local o = { payload = ARGV[6], priority = tonumber(ARGV[7]), run_at = -1,
            max_attempts = ARGV[8], lease_ms = ARGV[9], backoff_base_ms = '0',
            backoff_cap_ms = '0', timeout_ms = ARGV[11] }
local created = 0
local runs = KEYS[11] .. name
for i = 13, #ARGV do
  local id = 'cue:' .. name .. ':' .. ARGV[i]
  local _, new = create_job(q, id, '', o, now)
  if new then
    created = created + 1
    redis.call('LPUSH', runs, ARGV[i] .. ':' .. id)
  end
end
if created > 0 then redis.call('LTRIM', runs, 0, tonumber(ARGV[12]) - 1) end
redis.call('HSET', q.cues, name, ARGV[4])
redis.call('ZADD', q.cue_next, tonumber(ARGV[5]), name)
if created > 0 then wake(q) end
flush_counts(q, now)
return created
