"""Every Lua script documents its KEYS, ARGV and return value, and uses nothing else."""
from __future__ import annotations

import re

import pytest

from redispool.scripts import LUA_DIR, read_header, script_names

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
    assert durable == {"enqueue", "complete", "fail", "ack"}
