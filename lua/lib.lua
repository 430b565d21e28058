-- lib: helpers shared by every script.
-- redispool/scripts.py puts this file in front of each script before loading it, so a
-- script may call any function below. Functions take `q`, a table of the queue's key
-- names that the script builds from its KEYS (only the fields a function uses must be set).
-- Times are milliseconds from the Redis server clock (TIME); no client clock is used.

local PRIORITY_SPAN = 4398046511104   -- 2^42; ready score = -priority * span + seq
local ERRORS_KEPT = 10
local TERMINAL = { done = true, dead = true, cancelled = true }
local MARKER = 'm'                    -- the one member of rp:{q}:marker (claimers BZPOPMIN it)
local EVENT_ERROR_CHARS = 500         -- an error is cut to this in the event log (the job keeps it whole)

-- Per-run state: the names below (up to "end of per-run state") are the only lib locals a
-- run changes, each set back to its value here before every run (as an EVAL script lib
-- is defined afresh on every run; in the function library scripts.py loads once, a
-- function scripts.py writes from these lines resets them first).
local tally = {}                      -- counter increments, written once by flush_counts
local planned = {}                    -- earliest new daemon work by meta field, see flush_plan
local outboxed = 0                    -- 1 once settle wrote to rp:{q}:outbox (the caller drains it)
local emitted = 0                     -- events emit appended without trimming (q.defer_trim)
local numtext = {}                    -- num's texts of this run, by value
local expired_at_claim = 0            -- jobs lease_job cancelled for their expiry in this call
-- end of per-run state

-- Number `n` as the text a command receives for it (redis.call formats a number with
-- "%.17g", through glibc's float path: that costs more than most commands it goes to),
-- formatted once per value per script run (a batch passes the same few, such as now, a
-- lease expiry or attempt 1, many times), a whole number as an integer (the same text).
-- num_text formats without keeping the text, for a value used once (a lease token).
local function num_text(n)
  if n == math.floor(n) and n > -1e15 and n < 1e15 then
    return string.format('%d', n)   -- the same text for a whole number, without the float path
  end
  return string.format('%.17g', n)
end

local function num(n)
  local text = numtext[n]
  if not text then
    text = num_text(n)
    numtext[n] = text
  end
  return text
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- now_ms() as num() gives its text, from TIME's seconds and microseconds (at most six
-- digits, no leading zeros) without parsing or formatting a number: for a script that
-- only stores the time (enqueue_plain).
local function now_text()
  local t = redis.call('TIME')
  return t[1] .. string.sub('00000' .. t[2], -6, -4)
end

-- The number in string `v` if it is a finite number, else nil (an absent or damaged field).
local function finite(v)
  local n = tonumber(v)
  if n and n == n and n > -math.huge and n < math.huge then return n end
  return nil
end

-- The number in string `v` if it is a whole number HINCRBY can count on (at most 15
-- digits, no sign, no spaces), else nil: the rule for a job's attempt count 'a'.
local function whole(v)
  if v and #v < 16 and string.match(v, '^%d+$') then return tonumber(v) end
  return nil
end

-- The score of the first member of zset `set` (a number), or nil when it is empty.
local function first_score(set)
  local first = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
  return first[2] and tonumber(first[2]) or nil
end

-- The concurrency cap in stored config value `cap` (a string or nil): at most that many
-- jobs leased at once, a whole number >= 1; nil when not set (or damaged).
local function cap_of(cap)
  cap = finite(cap)
  if cap and cap >= 1 then return math.floor(cap) end
  return nil
end

-- A queue's limits from its stored config values (strings or nil): { rate, per_ms } (at
-- most `rate` claims in any `per_ms` window) and `concurrency` (at most that many leased
-- at once); each nil when not set (or damaged).
local function limits_of(rate, per_ms, cap)
  rate, per_ms = finite(rate), finite(per_ms)
  local out = {}
  if rate and per_ms and rate >= 1 and per_ms >= 1 then out.rate, out.per_ms = math.floor(rate), per_ms end
  out.concurrency = cap_of(cap)
  return out
end

-- The queue's retention: a setting stored in rp:{q}:config (Engine.set_retention) wins
-- over the caller's default (its engine's). Returns a table with done_ttl_ms, done_max,
-- dead_ttl_ms, dead_max, drop_payload (true: a done job's payload is deleted), result_max
-- (bytes; nil: a result of any size is kept) and lim, the queue's limits (as limits()
-- returns them: the same HMGET reads both).
local function retention(q, done_ttl_ms, done_max, dead_ttl_ms, dead_max)
  local c = redis.call('HMGET', q.config, 'done_ttl_ms', 'done_max', 'dead_ttl_ms', 'dead_max',
                       'drop_payload', 'result_max', 'rate', 'per_ms', 'concurrency')
  return { done_ttl_ms = finite(c[1]) or done_ttl_ms, done_max = finite(c[2]) or done_max,
           dead_ttl_ms = finite(c[3]) or dead_ttl_ms, dead_max = finite(c[4]) or dead_max,
           drop_payload = c[5] == '1', result_max = finite(c[6]), lim = limits_of(c[7], c[8], c[9]) }
end

local function count(name, n)
  tally[name] = (tally[name] or 0) + n
end

-- Trim the event log once for the events appended by emit (q.defer_trim). Write the tally
-- to the lifetime totals, and the jobs done and failed to this minute's
-- fields of the queue's minute histogram, q.minutes (rp:{q}:minutes: a script that
-- finishes jobs declares it among its KEYS). Fields "<minute>:d" / "<minute>:f" (minute = unix ms //
-- 60000); the first write of a minute deletes the fields 61-181 minutes old and sets the
-- key to expire 2 hours later (so 2 hours after the minute of its last write), so it
-- holds at most about 3 hours.
local function flush_counts(q, now)
  if emitted > 0 then
    redis.call('XTRIM', q.events, 'MAXLEN', '~', num(q.events_max))
    emitted = 0
  end
  for name, n in pairs(tally) do
    if n ~= 0 then redis.call('HINCRBY', q.counts, name, num(n)) end
  end
  local done, failed = tally.completed or 0, tally.failed or 0
  if done == 0 and failed == 0 then return end
  local minutes = q.minutes
  local m = math.floor((now or now_ms()) / 60000)
  local first = false
  if done > 0 then first = redis.call('HINCRBY', minutes, num(m) .. ':d', num(done)) == done end
  if failed > 0 then first = redis.call('HINCRBY', minutes, m .. ':f', failed) == failed or first end
  if first then
    local old = {}
    for i = m - 181, m - 61 do
      old[#old + 1] = i .. ':d'
      old[#old + 1] = i .. ':f'
    end
    redis.call('HDEL', minutes, unpack(old))
    redis.call('PEXPIRE', minutes, 7200000)
  end
end

-- Append an event to the queue's event log q.events (rp:{q}:events, a stream) unless
-- q.events_max is 0 (the engine's events_max, from ARGV): field t its type, j the job id
-- ('' for a queue's own events: paused, resumed), then the name, value pairs in `...`
-- (a attempt, w worker id, e error, s state after it, p state before it, r priority).
-- The entry id is the server time in ms and orders the log; MAXLEN ~ keeps about
-- events_max entries (Redis drops whole stream nodes, so trimming costs next to nothing).
-- A script that sets q.defer_trim trims once, in flush_counts, instead of on every XADD
-- (it must call flush_counts before it returns).
local function emit(q, type, id, ...)
  if q.events_max == 0 then return end
  if q.defer_trim then
    redis.call('XADD', q.events, '*', 't', type, 'j', id, ...)
    emitted = emitted + 1
  else
    redis.call('XADD', q.events, 'MAXLEN', '~', q.events_max, '*', 't', type, 'j', id, ...)
  end
end

-- Daemon work created at `at_ms` (field 'scheduler_at': a scheduled job or cue fire;
-- 'sweeper_at': a lease expiry), recorded by flush_plan.
local function plan(field, at_ms)
  if not planned[field] or at_ms < planned[field] then planned[field] = at_ms end
end

-- The daemons visit a queue at the time its meta fields scheduler_at / sweeper_at hold
-- (mirrored in the global zsets rp:due:scheduler / rp:due:sweeper, which a script cannot
-- touch on a cluster). Work planned earlier than that moves the field; returns, per
-- daemon, the new time for the caller's `ZADD rp:due:<daemon> LT`, or -1 (nothing to do).
local function flush_plan(q)
  local out = { -1, -1 }
  for i, field in ipairs({ 'scheduler_at', 'sweeper_at' }) do
    local at = planned[field]
    if at then
      local current = tonumber(redis.call('HGET', q.meta, field))
      if not current or at < current then
        redis.call('HSET', q.meta, field, at)
        out[i] = at
      end
    end
  end
  return out[1], out[2]
end

-- A daemon's own visit: store when it next has work in the queue (`next_ms`, or -1 for
-- none, which clears the field), replacing whatever was planned.
local function store_plan(q, field, next_ms)
  if next_ms < 0 then
    redis.call('HDEL', q.meta, field)
  else
    redis.call('HSET', q.meta, field, next_ms)
  end
end

-- Reserve n numbers of the queue's counter (ids, ready order, lease tokens); returns the first.
local function next_seq(q, n)
  return redis.call('HINCRBY', q.meta, 'seq', num(n)) - n + 1
end

-- Flow control (Engine.set_limits): the queue's limits, from its rp:{q}:config hash (`q.config`)
-- when the script has it: { rate, per_ms } (at most `rate` claims in any `per_ms` window) and
-- `concurrency` (at most that many leased at once); each nil when not set (or damaged).
local function limits(q)
  if not q.config then return {} end
  local c = redis.call('HMGET', q.config, 'rate', 'per_ms', 'concurrency')
  return limits_of(c[1], c[2], c[3])
end

-- True when the queue's concurrency cap (limits `lim`) is reached: a claim leases nothing
-- now, and a finishing job sets the marker again (rearm).
local function capped(q, lim)
  return lim.concurrency ~= nil and redis.call('ZCARD', q.leased) >= lim.concurrency
end

-- Wake blocked claimers: jobs were just made ready (unless the queue is paused, or its
-- concurrency cap is reached when the script knows its limits: then a finishing job wakes them).
-- wake_keys takes the keys one by one, for a script that builds no `q` table (enqueue_plain):
-- rp:{q}:meta, rp:{q}:marker, and rp:{q}:config and rp:{q}:leased (nil: the script does not
-- know its limits); wake(q) is the same for a script's `q`.
local function wake_keys(meta, marker, config, leased)
  if redis.call('HEXISTS', meta, 'paused') == 1 then return end
  if config then
    local cap = cap_of(redis.call('HGET', config, 'concurrency'))
    if cap and redis.call('ZCARD', leased) >= cap then return end
  end
  redis.call('ZADD', marker, '0', MARKER)
end

local function wake(q)
  wake_keys(q.meta, q.marker, q.config, q.leased)
end

-- Add the wake-up marker when jobs are ready and the queue is not paused, else remove it.
-- It is also removed when `full` says the queue's concurrency cap is reached (capped()):
-- a finishing job sets it again (rearm). The rate never removes it: a claimer it wakes
-- learns when the window allows the next claim. `running`: the caller has just seen that
-- the queue is not paused (the check is not repeated); `ready`: the caller knows whether
-- jobs are ready (true / false; nil: ZCARD tells).
local function set_marker(q, full, running, ready)
  if (running or redis.call('HEXISTS', q.meta, 'paused') == 0) and not full
     and (ready or (ready == nil and redis.call('ZCARD', q.ready) > 0)) then
    redis.call('ZADD', q.marker, 0, MARKER)
  else
    redis.call('ZREM', q.marker, MARKER)
  end
end

-- After leased jobs finished (complete, fail, ack): when the concurrency cap held claimers
-- back (`leased_before`, the leased count before, at the cap) and a slot is free now, set
-- the marker so that a blocked claimer wakes and takes it.
local function rearm(q, lim, leased_before)
  if lim.concurrency and leased_before and leased_before >= lim.concurrency
     and redis.call('ZCARD', q.leased) < lim.concurrency then
    set_marker(q)
  end
end

-- The rate limit's sliding log q.ratelog (a list: the server time in ms of each claim,
-- newest first) without the claims older than the window `per_ms`, dropped from its
-- tail; returns how many claims remain in the window. The tail is read in chunks that
-- grow from `chunk` (about what one claim leases, so a steady drain reads one).
local function window_claims(q, per_ms, now, chunk)
  local cutoff = now - per_ms
  while true do
    local tail = redis.call('LRANGE', q.ratelog, -chunk, -1)
    local old = 0
    for i = #tail, 1, -1 do
      if tonumber(tail[i]) > cutoff then break end
      old = old + 1
    end
    if old > 0 then redis.call('LTRIM', q.ratelog, 0, -old - 1) end
    if old < chunk then return redis.call('LLEN', q.ratelog) end
    chunk = math.min(chunk * 4, 4096)
  end
end

-- How many of `want` jobs the queue's limits `lim` let a claim lease now, and when they let
-- none because of the rate, the ms until the window allows min(want, rate) claims (else -1).
-- The window holds at most `rate` claims in any `per_ms`: a claim at `now` is allowed while
-- fewer than `rate` claims happened after now - per_ms. `leased`: the leased count, when
-- the caller has read it.
local function allowance(q, lim, want, now, leased)
  if lim.concurrency then
    want = math.min(want, lim.concurrency - (leased or redis.call('ZCARD', q.leased)))
    if want <= 0 then return 0, -1 end
  end
  if not lim.rate then return want, -1 end
  local free = lim.rate - window_claims(q, lim.per_ms, now, math.max(8, want))
  if free > 0 then return math.min(want, free), -1 end
  -- the window allows `need` more once its need-th oldest claim of the last `rate` left it
  local need = math.min(want, lim.rate)
  local at = tonumber(redis.call('LINDEX', q.ratelog, lim.rate - need))
  return 0, math.max(1, at + lim.per_ms - now)
end

-- Record `n` claims at `now` in the rate limit's sliding log.
local function note_claims(q, n, now)
  local times = {}
  for i = 1, n do times[i] = now end
  redis.call('LPUSH', q.ratelog, unpack(times))
end

-- Wake blocked claimers when job `id` became the earliest scheduled job, so they
-- shorten their wait to its run time.
local function wake_if_earliest(q, id)
  local first = redis.call('ZRANGE', q.scheduled, 0, 0)
  if first[1] == id then redis.call('ZADD', q.marker, 0, MARKER) end
end

-- Put job `id` into ready with order number `seq`; false when its hash is gone.
local function make_ready(q, id, seq, now)
  local jkey = q.jprefix .. id
  local f = redis.call('HMGET', jkey, 's', 'r')
  if not f[1] then return false end
  local priority = finite(f[2]) or 0
  redis.call('ZADD', q.ready, -priority * PRIORITY_SPAN + (seq % PRIORITY_SPAN), id)
  redis.call('HSET', jkey, 's', 'ready', 'u', num(now))
  return true
end

-- Record `err` of attempt `attempt`, keeping the last ERRORS_KEPT, latest first.
local function push_error(jkey, attempt, err, now)
  local raw = redis.call('HGET', jkey, 'e')
  local ok, list = pcall(cjson.decode, raw or '[]')
  if not ok or type(list) ~= 'table' then list = {} end   -- a broken error list starts over
  table.insert(list, 1, { attempt, err, now })
  while #list > ERRORS_KEPT do table.remove(list) end
  redis.call('HSET', jkey, 'e', cjson.encode(list))
end

-- Free the unique key of job `id` (hash `jkey`) for new jobs, if the job still holds it.
local function free_unique(q, jkey, id)
  local k = redis.call('HGET', jkey, 'k')
  if k and redis.call('HGET', q.unique, k) == id then redis.call('HDEL', q.unique, k) end
end

-- The unfinished job holding unique key `ukey`, as id, state; nil when none does.
local function unique_holder(q, ukey)
  local holder = redis.call('HGET', q.unique, ukey)
  if not holder then return nil end
  local state = redis.call('HGET', q.jprefix .. holder, 's')
  if state and not TERMINAL[state] then return holder, state end
  return nil
end

-- Move a job that has left its live set into terminal `state` (its set is q[state]):
-- stamp it, drop its lease token and free its unique key for new jobs.
local function close_job(q, id, state, now)
  local jkey = q.jprefix .. id
  redis.call('ZADD', q[state], num(now), id)
  redis.call('HSET', jkey, 's', state, 'u', num(now))
  redis.call('HDEL', jkey, 't')
  free_unique(q, jkey, id)
end

-- Dependencies (keys.py has the layout): a waiting job's hash holds dm (mode 'all' /
-- 'any'), dt (its parents), dd / df (parents done / failed so far), dx (parents from other
-- queues already applied, '\n'-separated: resolve.lua runs once per parent), dep (the
-- parents, JSON [[queue, id], ...]) and wd / wa (its delay ms / run time ms, applied on release).

-- The queue's name, from its key prefix rp:{q}:job: (queue names have no braces).
local function queue_name(q)
  return string.match(q.jprefix, '{(.*)}:job:$')
end

-- waiting -> ready | scheduled: its parents allow job `id` to run now (or after its delay).
local function release_waiting(q, id, now)
  local jkey = q.jprefix .. id
  redis.call('ZREM', q.waiting, id)
  local f = redis.call('HMGET', jkey, 'wd', 'wa')
  local run_at = -1
  if f[1] then run_at = now + (finite(f[1]) or 0) elseif f[2] then run_at = finite(f[2]) or -1 end
  if run_at > now then
    redis.call('ZADD', q.scheduled, run_at, id)
    redis.call('HSET', jkey, 's', 'scheduled', 'u', now)
    plan('scheduler_at', run_at)
    wake_if_earliest(q, id)
    emit(q, 'enqueued', id, 's', 'scheduled', 'p', 'waiting')
  else
    make_ready(q, id, next_seq(q, 1), now)
    wake(q)
    emit(q, 'enqueued', id, 's', 'ready', 'p', 'waiting')
  end
end

-- Apply "parent `parent` (text queue/id) ended `outcome`" (done, dead, cancelled) to job
-- `id` if it is waiting: release it when its mode's condition is met, cancel it when it
-- can no longer be. With `once`, a parent already applied to it is skipped (the cross-queue
-- hand-off may deliver twice). Returns true when the job was cancelled (its own children
-- are the caller's to settle).
local function resolve(q, id, parent, outcome, now, once)
  local jkey = q.jprefix .. id
  local f = redis.call('HMGET', jkey, 's', 'dm', 'dt', 'dx')
  if f[1] ~= 'waiting' then return false end
  if once then
    local seen = f[4] or '\n'
    if string.find(seen, '\n' .. parent .. '\n', 1, true) then return false end
    redis.call('HSET', jkey, 'dx', seen .. parent .. '\n')
  end
  local total = finite(f[3]) or 1
  if outcome == 'done' then
    local done = redis.call('HINCRBY', jkey, 'dd', 1)
    if f[2] == 'any' or done >= total then release_waiting(q, id, now) end
    return false
  end
  local failed = redis.call('HINCRBY', jkey, 'df', 1)
  if f[2] == 'any' and failed < total then return false end
  local err = 'DependencyFailed: parent ' .. parent .. ' is ' .. outcome
  redis.call('ZREM', q.waiting, id)
  push_error(jkey, 0, err, now)
  close_job(q, id, 'cancelled', now)
  emit(q, 'cancelled', id, 'p', 'waiting', 'e', err)
  return true
end

-- Tell the children of job `id`, which just ended `outcome`, in rp:{q}:children:<id>
-- (members "queue\nid"): a child of this queue is released or cancelled here, in the
-- finishing script (the children of a cancelled child in turn); for a child of another
-- queue (another slot) an entry "queue\nid\nparent id\noutcome" goes to rp:{q}:outbox,
-- applied in the child's slot by resolve.lua (Engine._drain_outbox: at once by the
-- finishing engine, else by the scheduler, whose visit this plans now).
local function settle(q, id, outcome, now)
  local name = queue_name(q)
  local work = { id, outcome }
  local i = 1
  while i < #work do
    local pid, out = work[i], work[i + 1]
    i = i + 2
    local ckey = q.children .. pid
    local members = redis.call('SMEMBERS', ckey)
    if #members > 0 then
      redis.call('DEL', ckey)
      for _, m in ipairs(members) do
        local sep = string.find(m, '\n', 1, true)
        local cq, cid = string.sub(m, 1, sep - 1), string.sub(m, sep + 1)
        if cq == name then
          if resolve(q, cid, name .. '/' .. pid, out, now, false) then
            work[#work + 1] = cid
            work[#work + 1] = 'cancelled'
          end
        else
          redis.call('ZADD', q.outbox, now, m .. '\n' .. pid .. '\n' .. out)
          plan('scheduler_at', now)
          outboxed = 1
        end
      end
    end
  end
end

-- close_job, then (in a script that declares rp:{q}:children:) settle the job's children.
local function finish(q, id, state, now)
  close_job(q, id, state, now)
  if q.children then settle(q, id, state, now) end
end

-- -> dead: job `id`, out of its live set, is finished as dead and counted; its event
-- names the attempt and the error that ended it.
local function make_dead(q, id, now, attempt, err)
  finish(q, id, 'dead', now)
  count('dead', 1)
  emit(q, 'dead', id, 'a', attempt, 'e', string.sub(err, 1, EVENT_ERROR_CHARS))
end

-- any -> (deleted): delete job `id`'s hash and free its unique key. The caller removes
-- the id from its state set.
local function drop_job(q, id)
  local jkey = q.jprefix .. id
  free_unique(q, jkey, id)
  redis.call('DEL', jkey)
end

-- Delete at most `budget` jobs of terminal set `set` that are older than ttl_ms or
-- beyond the newest max_count; returns how many were deleted. (Oldest first: the set is
-- scored by finish time, so the jobs to delete are always a prefix of it.)
local function trim(q, set, ttl_ms, max_count, now, budget)
  local total = redis.call('ZCARD', set)
  if total == 0 then return 0 end
  local over, cutoff = total - max_count, now - ttl_ms
  local ids, n = {}, math.min(math.max(over, 0), budget)
  if n > 0 then ids = redis.call('ZRANGE', set, 0, num(n - 1)) end   -- the oldest `over`, whatever their age
  if n < budget then   -- then those past the ttl (no scores read: Redis 7.0 formats each with sprintf)
    local old = redis.call('ZRANGEBYSCORE', set, '-inf', '(' .. num(cutoff), 'LIMIT', num(n), num(budget - n))
    for _, id in ipairs(old) do ids[#ids + 1] = id end
  end
  if #ids == 0 then return 0 end
  local jkeys = {}
  for i, id in ipairs(ids) do jkeys[i] = q.jprefix .. id end
  for i = 1, #ids, 1000 do
    redis.call('DEL', unpack(jkeys, i, math.min(i + 999, #ids)))
    redis.call('ZREM', set, unpack(ids, i, math.min(i + 999, #ids)))
  end
  return #ids
end

-- True when `token` holds a live (unexpired) lease on job `id`.
local function held(q, id, token, now)
  if redis.call('HGET', q.jprefix .. id, 't') ~= token then return false end
  local expiry = redis.call('ZSCORE', q.leased, id)
  return expiry ~= false and tonumber(expiry) > now
end

-- End job `id`'s lease: out of leased, its fencing token dropped, so the worker's later
-- complete / fail / heartbeat with that token see LEASE_LOST.
local function end_lease(q, id)
  redis.call('ZREM', q.leased, id)
  redis.call('HDEL', q.jprefix .. id, 't')
end

-- Record that the attempt of leased job `id` failed with error `err`; returns the attempt
-- number and whether the job has attempts left. A field damaged since the claim counts as
-- absent (attempt 1 of 1): this runs where a script error would lose the job.
local function failed_attempt(q, id, err, now)
  local jkey = q.jprefix .. id
  local f = redis.call('HMGET', jkey, 'a', 'm')
  local attempt = whole(f[1]) or 1
  push_error(jkey, attempt, err, now)
  count('failed', 1)
  return attempt, attempt < (finite(f[2]) or 1)
end

-- leased -> ready: end job `id`'s lease and put it back in ready with order number `seq`.
-- With `refund` the attempt is not counted (release); an attempt count that is not a
-- whole number is left as it is, for the next lease_job to judge. Returns false when
-- the job's hash is gone.
local function requeue(q, id, seq, now, refund)
  end_lease(q, id)
  if refund and whole(redis.call('HGET', q.jprefix .. id, 'a')) then
    redis.call('HINCRBY', q.jprefix .. id, 'a', -1)
  end
  return make_ready(q, id, seq, now)
end

-- leased (expired, or its worker gone) -> ready | dead: the attempt of job `id` failed
-- with error `reason`; the job goes back to ready with order number `seq`, or to dead
-- after its last attempt. Returns false (the id dropped from leased) when its hash is gone.
local function expire_job(q, id, reason, seq, now)
  if redis.call('EXISTS', q.jprefix .. id) == 0 then
    end_lease(q, id)
    return false
  end
  local attempt, left = failed_attempt(q, id, reason, now)
  emit(q, 'expired', id, 'a', attempt, 'e', reason, 's', left and 'ready' or 'dead')
  if left then
    requeue(q, id, seq, now)
    count('retried', 1)
  else
    end_lease(q, id)
    make_dead(q, id, now, attempt, reason)
  end
  return true
end

-- Backoff before retry number `attempt`: base * 2^(attempt-1), capped, equal jitter.
local function backoff(attempt, base_ms, cap_ms)
  local d = math.min(cap_ms, base_ms * 2 ^ (attempt - 1))
  return math.floor(d / 2 + math.random() * d / 2)
end

-- Move due scheduled jobs (at most `budget`) to ready; returns how many moved.
local function promote_due(q, now, budget)
  local ids = redis.call('ZRANGEBYSCORE', q.scheduled, '-inf', num(now), 'LIMIT', 0, num(budget))
  if #ids == 0 then return 0 end
  redis.call('ZREM', q.scheduled, unpack(ids))
  local seq = next_seq(q, #ids)
  local moved = 0
  for i, id in ipairs(ids) do
    if make_ready(q, id, seq + i - 1, now) then moved = moved + 1 end
  end
  return moved
end

-- What is wrong with job hash fields `f` (p, m, l, a, bb, bc) that leasing needs, or nil;
-- `max_attempts`, `lease` and `attempts` are finite(f[2]), finite(f[3]) and whole(f[4]),
-- which the caller has read (each field is parsed once).
local function malformed(f, max_attempts, lease, attempts)
  if not f[1] then return 'payload missing' end
  if not max_attempts then return 'max_attempts missing or not a number' end
  if f[3] and not (lease and lease > 0) then return 'lease not a positive number' end
  if f[4] and not attempts then return 'attempts not a whole number' end
  if (f[5] and not finite(f[5])) or (f[6] and not finite(f[6])) then return 'backoff not a number' end
  return nil
end

-- Expiry (a job's expires_at; hash field ex, ms): a job not leased by then is never run.
-- The lease step cancels it instead of leasing it (lease_job), and the sweeper cancels
-- those still waiting, scheduled or ready at that time (sweep.lua reads rp:{q}:expiring,
-- the jobs that have an expiry by that time; no other job is in it, so a job without an
-- expiry costs nothing). A job leased before its expiry runs, retries included up to the
-- next lease after it.
local EXPIRABLE = { waiting = true, scheduled = true, ready = true }
local EXPIRED_ERROR = 'expired: not claimed before its expires_at'

-- unleased -> cancelled: job `id`, out of its set (`state`), passed its expiry: cancel it
-- with the reason as its error (its children are settled when the script declares them).
local function expire_unclaimed(q, id, state, now)
  push_error(q.jprefix .. id, 0, EXPIRED_ERROR, now)
  finish(q, id, 'cancelled', now)
  emit(q, 'cancelled', id, 'p', state, 'e', EXPIRED_ERROR)
end

-- Lease job `id`, just taken out of ready, to `worker` with fencing token `token`;
-- returns attempt, max_attempts, lease_ms, timeout_ms (0 = none of its own), payload.
-- claim and claim_id share this step. The progress of an earlier attempt is cleared:
-- progress (field pg) belongs to the attempt that reported it.
-- A damaged job hash (payload or max_attempts missing, a number field that is not one)
-- goes to dead with an error instead: every field is checked before the first write, so
-- no script error can leave the job in no set. Returns nil for such a job, and for an id
-- whose hash is gone, and for a job past its expiry (cancelled instead: expire_unclaimed).
-- With `leases` (a table) the job's lease expiry, id pair is appended to it for the
-- caller's one ZADD of rp:{q}:leased for a batch, instead of a ZADD of its own.
local function lease_job(q, id, worker, lease_ms, token, now, leases)
  local jkey = q.jprefix .. id
  local f = redis.call('HMGET', jkey, 'p', 'm', 'l', 'a', 'bb', 'bc', 'to', 'pg', 'ex')
  local ex = f[9] and finite(f[9])   -- expiry: past it, the job is cancelled, not leased
  if ex and ex <= now then
    expire_unclaimed(q, id, 'ready', now)
    expired_at_claim = expired_at_claim + 1
    return nil
  end
  local max_attempts, lease, attempts = finite(f[2]), f[3] and finite(f[3]), f[4] and whole(f[4])
  local wrong = malformed(f, max_attempts, lease, attempts)
  if wrong then
    if redis.call('EXISTS', jkey) == 1 then
      push_error(jkey, 0, 'malformed job: ' .. wrong, now)
      make_dead(q, id, now, 0, 'malformed job: ' .. wrong)
    end
    return nil
  end
  local attempt = (attempts or 0) + 1   -- malformed() let only a whole number or none through
  lease = lease or lease_ms
  redis.call('HSET', jkey, 'a', num(attempt), 's', 'leased', 't', num_text(token), 'w', worker, 'u', num(now))
  if f[8] then redis.call('HDEL', jkey, 'pg') end
  if leases then
    leases[#leases + 1] = num(now + lease)
    leases[#leases + 1] = id
  else
    redis.call('ZADD', q.leased, num(now + lease), id)
  end
  plan('sweeper_at', now + lease)
  emit(q, 'claimed', id, 'a', num(attempt), 'w', worker)
  return attempt, max_attempts, lease, f[7] and finite(f[7]) or 0, f[1]
end

-- Milliseconds until the earliest scheduled job is due (0 if due now), -1 if none.
local function next_due_in(q, now)
  local first = first_score(q.scheduled)
  if not first then return -1 end
  return math.max(0, first - now)
end

-- Lease up to `limit` ready jobs to `worker`, within the queue's limits `lim` (limits(),
-- read when not given), appending id, token, attempt, max_attempts, lease_ms, timeout_ms,
-- payload per job to `out`. Due scheduled jobs are promoted first, so delayed jobs run without a
-- scheduler daemon. A damaged job goes to dead (lease_job). Returns the number leased and, when none, the
-- claim's wait_ms: the ms until the rate window allows a claim when the rate held it
-- back, else until the earliest scheduled job is due; -1 when there is nothing to wait
-- for (nothing scheduled, or paused) or the marker will say (the concurrency cap with jobs
-- ready: a finishing job sets it, rearm).
local function claim_jobs(q, worker, limit, lease_ms, now, out, lim)
  if redis.call('HEXISTS', q.meta, 'paused') == 1 then
    redis.call('ZREM', q.marker, MARKER)
    return 0, -1
  end
  promote_due(q, now, 1000)
  lim = lim or limits(q)
  local leased = lim.concurrency and redis.call('ZCARD', q.leased)
  local allowed, rate_wait = allowance(q, lim, limit, now, leased)
  local claimed = 0
  local more   -- jobs left in ready after the claim (nil: not read)
  if allowed > 0 then
    -- ZRANGE + ZREMRANGEBYRANK, not ZPOPMIN: Redis 7.0 formats every score it replies with
    -- sprintf. The ZRANGE reads one job more than it takes: whether any is left in ready.
    local want = allowed
    local popped = redis.call('ZRANGE', q.ready, 0, num(want))
    more = #popped > want
    while #popped > 0 do
      local take = more and want or #popped
      redis.call('ZREMRANGEBYRANK', q.ready, 0, num(take - 1))
      local token = next_seq(q, take)
      local skipped = expired_at_claim
      local leases = {}
      for i = 1, take do
        local id, tok = popped[i], token + i - 1
        local attempt, max_attempts, lease, timeout_ms, payload = lease_job(q, id, worker, lease_ms, tok, now, leases)
        if attempt then
          out[#out + 1] = id
          out[#out + 1] = tok
          out[#out + 1] = attempt
          out[#out + 1] = max_attempts
          out[#out + 1] = lease
          out[#out + 1] = timeout_ms
          out[#out + 1] = payload
          claimed = claimed + 1
        end
      end
      if #leases > 0 then redis.call('ZADD', q.leased, unpack(leases)) end
      -- jobs cancelled for their expiry left room: take as many of the next ones
      popped = {}
      if expired_at_claim > skipped and claimed < allowed and more then
        want = allowed - claimed
        popped = redis.call('ZRANGE', q.ready, 0, num(want))
        more = #popped > want
      end
    end
    if claimed > 0 and lim.rate then note_claims(q, claimed, now) end
  end
  if rate_wait >= 0 then
    -- held back by the rate: the marker stays as it is (a claimer it wakes learns when)
    if redis.call('ZCARD', q.ready) > 0 then return 0, rate_wait end
    redis.call('ZREM', q.marker, MARKER)
    local due = next_due_in(q, now)
    return 0, due >= 0 and math.max(due, rate_wait) or -1
  end
  set_marker(q, leased and leased + claimed >= lim.concurrency, true, more)
  if claimed > 0 or more or (more == nil and redis.call('ZCARD', q.ready) > 0) then return claimed, -1 end
  return 0, next_due_in(q, now)
end

-- Fail job `id` if `token` holds its lease: retry it (scheduled after `delay_ms`, or the
-- backoff when delay_ms < 0) or, when retry is off or attempts are used up, make it dead.
-- Returns the new state, or false when the lease is lost.
local function fail_job(q, id, token, err, retry, delay_ms, base_ms, cap_ms, now)
  if not held(q, id, token, now) then return false end
  local jkey = q.jprefix .. id
  end_lease(q, id)
  local attempt, left = failed_attempt(q, id, err, now)
  if retry and left then
    if delay_ms < 0 then
      local b = redis.call('HMGET', jkey, 'bb', 'bc')
      delay_ms = backoff(attempt, finite(b[1]) or base_ms, finite(b[2]) or cap_ms)
    end
    redis.call('ZADD', q.scheduled, now + delay_ms, id)
    redis.call('HSET', jkey, 's', 'scheduled', 'u', now)
    plan('scheduler_at', now + delay_ms)
    wake_if_earliest(q, id)
    count('retried', 1)
    emit(q, 'failed', id, 'a', attempt, 'e', string.sub(err, 1, EVENT_ERROR_CHARS), 's', 'scheduled')
    return 'scheduled'
  end
  make_dead(q, id, now, attempt, err)
  return 'dead'
end

-- Complete the `n` jobs listed in `list` from index `b` as id, token, result triples,
-- each only if its token holds a live lease, appending 1 (done) or 0 (lease lost) per job
-- to `out` (complete's and ack's ARGV). What the queue's retention `r` (retention())
-- allows is kept: a result over r.result_max bytes is not stored (its size goes to field
-- rd), and with r.drop_payload the payload is deleted (its size goes to field pd).
-- A batch pays once for what it can: one ZMSCORE reads the leases, one ZREM / ZADD moves
-- the jobs from leased to done, one EXISTS tells whether any of them has children to settle
-- and one whether any job of the queue holds a unique key (else a job's key is not read).
local function complete_listed(q, list, b, n, now, r, out)
  if n == 0 then return end
  local ids = {}
  for i = 1, n do ids[i] = list[b + 3 * (i - 1)] end
  local expiry = redis.call('ZMSCORE', q.leased, unpack(ids))
  local parents = false
  if q.children then
    local ckeys = {}
    for i = 1, n do ckeys[i] = q.children .. ids[i] end
    parents = redis.call('EXISTS', unpack(ckeys)) > 0
  end
  local unique = redis.call('EXISTS', q.unique) == 1
  -- first the checks (reads), then the first write: ZREM, which a Redis at maxmemory still
  -- runs (no deny-oom flag), after which the script may write on, so a full Redis still
  -- finishes jobs (and frees memory; as a function, the script is flagged allow-oom)
  local held, ukeys, seen, jkeys = {}, {}, {}, {}
  for i = 1, n do
    local id = ids[i]
    if not seen[id] and expiry[i] and tonumber(expiry[i]) > now then
      local jkey = q.jprefix .. id
      local token, k
      if unique then
        local f = redis.call('HMGET', jkey, 't', 'k')
        token, k = f[1], f[2]
      else
        token = redis.call('HGET', jkey, 't')
      end
      if token == list[b + 3 * i - 2] then
        seen[id] = true
        held[#held + 1] = id
        ukeys[i] = k or false
        jkeys[i] = jkey
      end
    end
  end
  if #held > 0 then redis.call('ZREM', q.leased, unpack(held)) end
  for i = 1, n do
    local id, result = ids[i], list[b + 3 * i - 1]
    if ukeys[i] ~= nil then
      local jkey = jkeys[i]
      local field, value = 'res', result
      if r.result_max and #result > r.result_max then field, value = 'rd', #result end
      -- (its token stays: out of leased, a job is never held() with it, and a done job
      -- is not leased again; one HDEL less per job)
      if r.drop_payload then
        redis.call('HSET', jkey, field, value, 's', 'done', 'u', num(now), 'pd', redis.call('HSTRLEN', jkey, 'p'))
        redis.call('HDEL', jkey, 'p')
      else
        redis.call('HSET', jkey, field, value, 's', 'done', 'u', num(now))
      end
      local k = ukeys[i]
      if k and redis.call('HGET', q.unique, k) == id then redis.call('HDEL', q.unique, k) end
      if parents then settle(q, id, 'done', now) end
      count('completed', 1)
      emit(q, 'completed', id)
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
  end
  if #held > 0 then
    local scored = {}
    for i, id in ipairs(held) do
      scored[2 * i - 1] = num(now)
      scored[2 * i] = id
    end
    redis.call('ZADD', q.done, unpack(scored))
  end
end

-- Fail the `n` jobs listed in `list` from index `b` as id, token, error, retry ('1' / '0'),
-- delay_ms quintuples, appending the new state or 0 (lease lost) per job to `out`
-- (fail's and ack's ARGV).
local function fail_listed(q, list, b, n, base_ms, cap_ms, now, out)
  for i = b, b + 5 * (n - 1), 5 do
    out[#out + 1] = fail_job(q, list[i], list[i + 1], list[i + 2], list[i + 3] == '1',
                             tonumber(list[i + 4]), base_ms, cap_ms, now) or 0
  end
end

-- Create job `id` ('' = a number of the queue counter; custom ids are never all
-- digits, so the two cannot collide) unless that id exists or an
-- unfinished job holds unique key `ukey` ('' = none). `o` holds payload, priority,
-- run_at (ms, -1 = now), and the strings max_attempts, lease_ms, backoff_base_ms,
-- backoff_cap_ms, timeout_ms, expires_at_ms ('0' or nil = not set; an expiry needs
-- q.expiring) and tags (JSON; '' or nil = none). `seq` (optional) is a counter number the caller
-- reserved for this job (its id if generated, and its place in ready); `ready_out`
-- (optional) collects score, id of a ready job for the caller's one ZADD of a batch.
-- Returns id, created (true/false), state.
-- The caller sets the marker afterwards (wake / wake_if_earliest).
local function create_job(q, id, ukey, o, now, seq, ready_out)
  if ukey ~= '' then
    local holder, state = unique_holder(q, ukey)
    if holder then return holder, false, state end
  end
  if id == '' then
    seq = seq or next_seq(q, 1)    -- generated ids are numbers; custom ids never are
    id = num(seq)
  elseif redis.call('EXISTS', q.jprefix .. id) == 1 then
    return id, false, redis.call('HGET', q.jprefix .. id, 's')
  end
  local state = o.run_at > now and 'scheduled' or 'ready'
  if o.waiting then state = 'waiting' end
  local jkey = q.jprefix .. id
  redis.call('HSET', jkey, 'p', o.payload, 's', state, 'm', o.max_attempts, 'c', num(now))
  local timeout_ms = o.timeout_ms or '0'
  local expires_ms, tags = o.expires_at_ms or '0', o.tags or ''   -- absent in fire_cue's options
  if o.priority ~= 0 or o.lease_ms ~= '0' or o.backoff_base_ms ~= '0' or o.backoff_cap_ms ~= '0'
      or timeout_ms ~= '0' or expires_ms ~= '0' or tags ~= '' then
    local f = {}
    if o.priority ~= 0 then f[#f + 1] = 'r'; f[#f + 1] = o.priority end
    if o.lease_ms ~= '0' then f[#f + 1] = 'l'; f[#f + 1] = o.lease_ms end
    if o.backoff_base_ms ~= '0' then f[#f + 1] = 'bb'; f[#f + 1] = o.backoff_base_ms end
    if o.backoff_cap_ms ~= '0' then f[#f + 1] = 'bc'; f[#f + 1] = o.backoff_cap_ms end
    if timeout_ms ~= '0' then f[#f + 1] = 'to'; f[#f + 1] = timeout_ms end
    if tags ~= '' then f[#f + 1] = 'tg'; f[#f + 1] = tags end
    if expires_ms ~= '0' then   -- expiry: indexed for the sweeper, which then visits the queue
      f[#f + 1] = 'ex'; f[#f + 1] = expires_ms
      redis.call('ZADD', q.expiring, expires_ms, id)
      plan('sweeper_at', tonumber(expires_ms))
    end
    redis.call('HSET', jkey, unpack(f))
  end
  if ukey ~= '' then
    redis.call('HSET', jkey, 'k', ukey)
    redis.call('HSET', q.unique, ukey, id)
  end
  if state == 'waiting' then
    redis.call('ZADD', q.waiting, now, id)
    if o.delay_ms and o.delay_ms >= 0 then redis.call('HSET', jkey, 'wd', o.delay_ms)
    elseif o.run_at > now then redis.call('HSET', jkey, 'wa', o.run_at) end
  elseif state == 'ready' then
    seq = seq or next_seq(q, 1)
    local score = -o.priority * PRIORITY_SPAN + (seq % PRIORITY_SPAN)
    if ready_out then
      ready_out[#ready_out + 1] = num(score)   -- the id's text when priority is 0
      ready_out[#ready_out + 1] = id
    else
      redis.call('ZADD', q.ready, score, id)
    end
  else
    redis.call('ZADD', q.scheduled, o.run_at, id)
    plan('scheduler_at', o.run_at)
  end
  count('enqueued', 1)
  if state == 'waiting' then emit(q, 'waiting', id, 's', state)
  elseif o.priority ~= 0 then emit(q, 'enqueued', id, 's', state, 'r', o.priority)
  else emit(q, 'enqueued', id, 's', state) end
  return id, true, state
end
