-- remove_cue: cue definition -> (deleted)
-- Deletes a cue and its run log; jobs it already fired stay.
-- At maxmemory: runs (its first write is one Redis allows there; scripts.py)
-- KEYS[1] rp:{q}:cues       hash  cue name -> definition (JSON)     rw
-- KEYS[2] rp:{q}:cue_next   zset  active cue names by next fire ms  w
-- KEYS[3] rp:{q}:cue_runs: prefix of each cue's run log (list)   w
-- ARGV[1] name              cue name
-- Returns: 1 removed, 0 no such cue
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3] .. ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
