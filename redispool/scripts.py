"""The only place Lua scripts are loaded and run.

Each ``lua/<name>.lua`` is prefixed with ``lua/lib.lua``, loaded once with SCRIPT LOAD and
called with EVALSHA; after NOSCRIPT (a Redis restart or SCRIPT FLUSH) it is loaded again
and the call repeated, transparently. Error replies ``"CODE detail"`` become the classes of ``errors.LUA_ERRORS``.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import redis

from .errors import LUA_ERRORS

LUA_DIR = Path(__file__).resolve().parent / "lua"
LIB = "lib"
_HEADER_KEY = re.compile(r"^-- KEYS\[(\d+)\]", re.M)
_LIB_FUNCTION = re.compile(r"^local function (\w+)\(.*?^end$", re.M | re.S)


def script_names() -> list[str]:
    return sorted(p.stem for p in LUA_DIR.glob("*.lua") if p.stem != LIB)


def read_script(name: str) -> str:
    return (LUA_DIR / f"{name}.lua").read_text()


def with_lib(lib: str, body: str) -> str:
    """``body`` preceded by lib.lua's constants and just the lib functions it calls
    (directly or through other lib functions): defining all of them on every call would
    cost a few microseconds per script run."""
    functions = {m.group(1): m for m in _LIB_FUNCTION.finditer(lib)}
    needed: set[str] = set()
    pending = [body]
    while pending:
        text = pending.pop()
        for name, match in functions.items():
            if name not in needed and re.search(rf"\b{name}\(", text):
                needed.add(name)
                pending.append(match.group(0))
    kept, last = [], 0
    for name, match in functions.items():
        kept.append(lib[last:match.start()])
        if name in needed:
            kept.append(match.group(0))
        last = match.end()
    kept.append(lib[last:])
    return "".join(kept) + "\n" + body


class Scripts:
    """All scripts, ready to run on one client by SHA."""

    def __init__(self, client: Any) -> None:
        self.client = client
        lib = read_script(LIB)
        self._text: dict[str, str] = {}
        self._sha: dict[str, str] = {}
        self._nkeys: dict[str, int] = {}
        for name in script_names():
            body = read_script(name)
            self._nkeys[name] = len(_HEADER_KEY.findall(body))
            self._text[name] = with_lib(lib, body)
            self._sha[name] = hashlib.sha1(self._text[name].encode()).hexdigest()

    def load(self) -> None:
        """SCRIPT LOAD every script now, so a Lua error shows at start-up, not mid-run."""
        for name, text in self._text.items():
            self._sha[name] = self.client.script_load(text)

    def run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run script ``name`` by SHA, loading it again after NOSCRIPT; ``keys`` must
        match its header."""
        if len(keys) != self._nkeys[name]:
            raise AssertionError(f"{name}.lua takes {self._nkeys[name]} keys, got {len(keys)}")
        try:
            try:
                return self.client.execute_command("EVALSHA", self._sha[name], len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                self._sha[name] = self.client.script_load(self._text[name])
                return self.client.execute_command("EVALSHA", self._sha[name], len(keys), *keys, *args)
        except redis.ResponseError as exc:
            raise lua_error(exc) from None


def lua_error(exc: redis.ResponseError) -> Exception:
    """Map a script's ``CODE detail`` error reply to its redispool class."""
    message = str(exc)
    for code, cls in LUA_ERRORS.items():
        at = message.find(code + " ")
        if at >= 0:
            return cls(message[at + len(code) + 1:].split(" script:")[0].strip())
    return exc


class Call(NamedTuple):
    """One script run: its name, KEYS and ARGV (``Scripts.run(*call)``). The Engine builds
    these once for the sync and the async engine alike."""

    script: str
    keys: list[str]
    args: list[Any]


class AsyncScripts:
    """The same scripts run by SHA on a ``redis.asyncio`` client (aio.py). Texts and SHAs
    come from the sync ``Scripts``, so both run byte-identical Lua."""

    def __init__(self, client: Any, scripts: Scripts) -> None:
        self.client = client
        self.scripts = scripts

    async def run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run script ``name`` by SHA, loading it again after NOSCRIPT."""
        s = self.scripts
        if len(keys) != s._nkeys[name]:
            raise AssertionError(f"{name}.lua takes {s._nkeys[name]} keys, got {len(keys)}")
        try:
            try:
                return await self.client.execute_command("EVALSHA", s._sha[name], len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                s._sha[name] = await self.client.script_load(s._text[name])
                return await self.client.execute_command("EVALSHA", s._sha[name], len(keys), *keys, *args)
        except redis.ResponseError as exc:
            raise lua_error(exc) from None
