"""Bearer tokens and roles of ``redispool serve``.

Tokens file: one ``ROLE TOKEN`` per line (roles ``admin``, ``worker``, ``read``), or
several on a line separated by commas; blank lines and ``#`` comments are skipped.
``admin`` may do everything; ``worker`` may enqueue, claim, heartbeat, finish and release
jobs and read; ``read`` may only read (GET). The file must not be readable by group or
others (it holds secrets), and a token may be listed with one role only. Without a
tokens file (or ``$REDISPOOL_TOKENS`` holding the same entries) every request is admin,
which ``redispool serve`` allows on a loopback address only (or with
``--insecure-no-auth``); a set but empty ``$REDISPOOL_TOKENS`` is refused, not taken for
"no tokens".
"""
from __future__ import annotations

import hmac
import os
import stat
from pathlib import Path

from ..errors import RedispoolError

ROLES = ("admin", "worker", "read")
RANK = {"read": 0, "worker": 1, "admin": 2}


class BadTokensFile(RedispoolError, ValueError):
    """A tokens file (or $REDISPOOL_TOKENS) that cannot be used."""


def load_tokens(path: str | Path) -> dict[str, str]:
    """token -> role from a tokens file (refused when group or others may read it)."""
    try:
        with open(path, encoding="utf-8") as file:
            mode = os.fstat(file.fileno()).st_mode
            text = file.read()
    except OSError as exc:
        raise BadTokensFile(f"cannot read tokens file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise BadTokensFile(f"tokens file {path} is not UTF-8 text") from None
    if os.name == "posix" and mode & 0o077:
        who = " and ".join(w for w, bits in (("group", 0o070), ("others", 0o007)) if mode & bits)
        raise BadTokensFile(f"tokens file {path} is open to {who} (mode {stat.S_IMODE(mode):04o}): "
                            f"it holds secrets; chmod 600 {path}")
    return parse_tokens(text, str(path))


def parse_tokens(text: str, source: str) -> dict[str, str]:
    """token -> role from ``ROLE TOKEN`` entries, one per line or comma-separated; errors
    name the line (not the entry), and never quote a token."""
    tokens: dict[str, str] = {}
    where: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        for entry in line.split(","):
            entry = entry.strip()
            if not entry or entry.startswith("#"):
                continue
            parts = entry.split()
            if len(parts) != 2 or parts[0] not in ROLES or len(parts[1]) < 8:
                raise BadTokensFile(f"{source}:{number}: expected 'ROLE TOKEN' with ROLE one of "
                                    f"{', '.join(ROLES)} and a token of 8+ characters")
            role, token = parts
            if tokens.get(token, role) != role:
                raise BadTokensFile(f"{source}:{number}: this token is listed on line {where[token]} "
                                    f"with the role {tokens[token]}; give each token one role")
            tokens[token] = role
            where.setdefault(token, number)
    if not tokens:
        raise BadTokensFile(f"{source} holds no token (to serve without tokens, set none at all)")
    return tokens


def same(given: str, known: str) -> bool:
    """Constant-time comparison of two texts, whatever characters they hold (a non-ASCII
    cookie or header is a mismatch, never an error)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), known.encode("utf-8", "surrogatepass"))


def role_of(header: str | None, tokens: dict[str, str] | None) -> str | None:
    """The role of an ``Authorization: Bearer`` header (admin when no tokens are set)."""
    if tokens is None:
        return "admin"
    if not header or not header.lower().startswith("bearer "):
        return None
    return token_role(header[7:].strip(), tokens)


def cookie_role(cookie: str | None, tokens: dict[str, str] | None) -> str | None:
    """The role of the dashboard's token cookie (admin when no tokens are set)."""
    if tokens is None:
        return "admin"
    return token_role(cookie or "", tokens)


def token_role(given: str, tokens: dict[str, str]) -> str | None:
    """The role of a token, compared with every known one in constant time; None if unknown."""
    found = None
    for token, role in list(tokens.items()):  # a copy: SIGHUP may swap the tokens meanwhile
        if given and same(given, token):
            found = role
    return found


def allows(role: str, needed: str) -> bool:
    """Whether ``role`` may do what needs ``needed`` (admin > worker > read)."""
    return RANK[role] >= RANK[needed]
