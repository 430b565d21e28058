"""The only place Lua scripts are loaded and run.

Each ``lua/<name>.lua`` is prefixed with ``lua/lib.lua``, loaded once with SCRIPT LOAD and
called with EVALSHA; redis-py reloads it transparently after NOSCRIPT (a Redis restart or
SCRIPT FLUSH). Error replies ``"CODE detail"`` become the classes of ``errors.LUA_ERRORS``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import redis

from .errors import LUA_ERRORS

LUA_DIR = Path(__file__).resolve().parent / "lua"
LIB = "lib"
_HEADER_KEY = re.compile(r"^-- KEYS\[(\d+)\]", re.M)


def script_names() -> list[str]:
    return sorted(p.stem for p in LUA_DIR.glob("*.lua") if p.stem != LIB)


def read_script(name: str) -> str:
    return (LUA_DIR / f"{name}.lua").read_text()


class Scripts:
    """All scripts, registered on one client."""

    def __init__(self, client: Any) -> None:
        lib = read_script(LIB)
        self._scripts: dict[str, Any] = {}
        self._nkeys: dict[str, int] = {}
        for name in script_names():
            body = read_script(name)
            self._nkeys[name] = len(_HEADER_KEY.findall(body))
            self._scripts[name] = client.register_script(lib + "\n" + body)

    def load(self, client: Any) -> None:
        """SCRIPT LOAD every script now, so a Lua error shows at start-up, not mid-run."""
        for script in self._scripts.values():
            script.sha = client.script_load(script.script)

    def run(self, name: str, keys: Sequence[str], args: Sequence[Any], client: Any = None) -> Any:
        """Run script ``name``; ``keys`` must match its header."""
        if len(keys) != self._nkeys[name]:
            raise AssertionError(f"{name}.lua takes {self._nkeys[name]} keys, got {len(keys)}")
        try:
            return self._scripts[name](keys=keys, args=args, client=client)
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
