"""The README's transition table (transition -> Lua helper -> scripts -> Python) cannot go
stale: it names every script in lua/ (lib.lua aside) and nothing else, and every lib
helper and Python method it names exists."""
from __future__ import annotations

import importlib
import re

import pytest

from redispool.scripts import LUA_DIR, script_names

from support import ROOT

README = ROOT / "README.md"
HEADER = "| transition | Lua helper | scripts | Python |"
NAME = re.compile(r"`([\w.]+)`")
# Where the first part of a dotted Python name is found.
OWNERS = {"Engine": "redispool.engine", "AsyncEngine": "redispool.aio", "compat": "redispool"}


def table() -> list[list[str]]:
    """The table's rows, as lists of cell texts."""
    lines = README.read_text().splitlines()
    assert lines.count(HEADER) == 1, f"the README has one table headed {HEADER!r}"
    rows = []
    for line in lines[lines.index(HEADER) + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 4, f"four cells in {line!r}"
        rows.append(cells)
    return rows


def names(column: int) -> list[str]:
    return [n for row in table() for n in NAME.findall(row[column])]


def resolve(dotted: str) -> object:
    """The object a dotted name such as ``Engine.claim`` or ``compat.cueapi.claim_by_id`` means."""
    first, *rest = dotted.split(".")
    obj: object = importlib.import_module(OWNERS[first])
    for part in [first, *rest]:
        try:
            obj = getattr(obj, part)
        except AttributeError:
            obj = importlib.import_module(f"{obj.__name__}.{part}")  # a subpackage's module
    return obj


def test_every_script_is_in_the_table_and_no_other():
    listed = set(names(2))
    assert listed == set(script_names()), (
        f"missing from the README table: {sorted(set(script_names()) - listed)}; "
        f"not a script in {LUA_DIR}: {sorted(listed - set(script_names()))}")


def test_every_lua_helper_in_the_table_is_a_lib_function():
    lib = (LUA_DIR / "lib.lua").read_text()
    defined = set(re.findall(r"^local function (\w+)\(", lib, re.M))
    assert set(names(1)) - defined == set()


@pytest.mark.parametrize("dotted", sorted(set(names(3))))
def test_every_python_name_in_the_table_exists(dotted):
    assert callable(resolve(dotted))
