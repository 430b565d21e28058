"""Every Lua script documents its KEYS, ARGV and return value, and uses nothing else."""
from __future__ import annotations

import re

import pytest

from redispool.scripts import LUA_DIR, function_library, read_header, run_state, script_names

KEY_LINE = re.compile(r"^-- KEYS\[(\d+)\] ", re.M)
ARG_LINE = re.compile(r"^-- ARGV\[(\d+)\](\.\.)? ", re.M)


def header(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        lines.append(line)
    return "\n".join(lines)


@pytest.mark.parametrize("name", script_names())
def test_header_matches_code(name):
    text = (LUA_DIR / f"{name}.lua").read_text()
    head, body = header(text), text[len(header(text)):]
    assert head.startswith(f"-- {name}: "), "first line names the script and its transition"
    assert "-- Returns:" in head
    keys = [int(k) for k in KEY_LINE.findall(head)]
    assert keys == list(range(1, len(keys) + 1)), "KEYS listed contiguously from 1"
    args = [int(a) for a, _ in ARG_LINE.findall(head)]
    assert args == list(range(1, len(args) + 1)), "ARGV listed contiguously from 1"
    used_keys = {int(k) for k in re.findall(r"KEYS\[(\d+)\]", body)}
    used_args = {int(a) for a in re.findall(r"ARGV\[(\d+)\]", body)}
    assert used_keys <= set(keys), f"KEYS used but not in the header: {used_keys - set(keys)}"
    assert used_args <= set(args), f"ARGV used but not in the header: {used_args - set(args)}"
    assert set(keys) <= used_keys or "KEYS[i]" in body, "every listed key is used"
    if "error_reply" in body:
        assert "-- Errors:" in head
    assert "redis.call('TIME')" not in body, "use now_ms() from lib.lua"
    assert "#!lua" not in text


def test_lib_defines_only_locals():
    text = (LUA_DIR / "lib.lua").read_text()
    assert not re.search(r"^function ", text, re.M), "globals are refused by Redis scripts"
    assert "KEYS[" not in text and "ARGV[" not in text


def test_the_durable_scripts_are_those_that_create_or_finish_jobs():
    durable = {name for name in script_names() if read_header((LUA_DIR / f"{name}.lua").read_text()).durable}
    assert durable == {"enqueue", "enqueue_plain", "complete", "fail", "ack"}


def test_a_run_changes_only_the_lib_locals_of_the_per_run_block():
    """The function library defines lib.lua once and resets only the per-run block's locals
    before each run (scripts.run_state): any other lib local a script changed would carry
    over to the next run, as it never did when lib was defined on every EVAL."""
    lib = (LUA_DIR / "lib.lua").read_text()
    state = dict(run_state(lib))
    assert {"tally", "planned", "outboxed", "emitted", "numtext", "expired_at_claim"} <= set(state)
    shared = set(re.findall(r"^local (\w+) =", lib, re.M)) - set(state)
    assert {"TERMINAL", "EXPIRABLE", "PRIORITY_SPAN"} <= shared
    code = [lib] + [(LUA_DIR / f"{name}.lua").read_text() for name in script_names()]
    for name in shared:
        changed = re.compile(rf"(?<![\w.]){name}(\[[^\]]*\]|\.\w+)*\s*=(?!=)|table\.\w+\({name}\b")
        writes = [m.group(0) for text in code for m in changed.finditer(text)]
        assert writes == [f"{name} ="], f"lib local {name} is changed by a run: {writes}"
    library = function_library().code
    reset = library[library.index("local function rp_reset_run()"):]
    for name, value in state.items():
        assert f"  {name} = {value}\n" in reset.split("end\n", 1)[0]


def test_the_scripts_that_run_at_maxmemory_are_those_whose_first_write_redis_allows_there():
    """Functions are refused at maxmemory before they run unless flagged allow-oom; these
    scripts' first write (ZREM, DEL, HDEL) is one Redis allows there, so as EVAL scripts
    they ran at maxmemory, and are flagged (scripts.py)."""
    runs = {name for name in script_names() if read_header((LUA_DIR / f"{name}.lua").read_text()).at_maxmemory}
    assert runs == {"ack", "cancel", "claim", "claim_id", "complete", "delete_job", "deregister_worker", "fail",
                    "pause", "promote", "purge", "register_worker", "release", "remove_cue", "remove_queue",
                    "resume", "set_limits", "set_retention"}
    reads = {name for name in script_names() if read_header((LUA_DIR / f"{name}.lua").read_text()).read_only}
    assert not runs & reads
    code = function_library().code
    for name in runs | reads:
        flag = "'no-writes'" if name in reads else "'allow-oom'"
        assert f"function_name = '{function_library().functions[name]}', flags = {{ {flag} }}" in code
