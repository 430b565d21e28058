"""Bearer tokens and roles of ``redispool serve``.

Tokens file: one ``ROLE TOKEN`` per line (roles ``admin``, ``worker``, ``read``); blank
lines and ``#`` comments are skipped. ``admin`` may do everything; ``worker`` may enqueue,
claim, heartbeat, finish and release jobs and read; ``read`` may only read (GET). Without
a tokens file (or ``$REDISPOOL_TOKENS`` holding the same lines) every request is admin,
which ``redispool serve`` allows on a loopback address only (or with
``--insecure-no-auth``).
"""
from __future__ import annotations

import hmac
from pathlib import Path

from ..errors import RedispoolError

ROLES = ("admin", "worker", "read")
RANK = {"read": 0, "worker": 1, "admin": 2}


class BadTokensFile(RedispoolError, ValueError):
    pass


def load_tokens(path: str | Path) -> dict[str, str]:
    """token -> role from a tokens file."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise BadTokensFile(f"cannot read tokens file {path}: {exc.strerror}") from None
    return parse_tokens(text, str(path))


def parse_tokens(text: str, source: str) -> dict[str, str]:
    """token -> role from ``ROLE TOKEN`` entries, one per line (or comma-separated)."""
    tokens: dict[str, str] = {}
    for number, line in enumerate(text.replace(",", "\n").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in ROLES or len(parts[1]) < 8:
            raise BadTokensFile(f"{source}:{number}: expected 'ROLE TOKEN' with ROLE one of "
                                f"{', '.join(ROLES)} and a token of 8+ characters")
        tokens[parts[1]] = parts[0]
    if not tokens:
        raise BadTokensFile(f"{source} holds no token")
    return tokens


def role_of(header: str | None, tokens: dict[str, str] | None) -> str | None:
    """The role of an ``Authorization: Bearer`` header (admin when no tokens are set)."""
    if tokens is None:
        return "admin"
    if not header or not header.lower().startswith("bearer "):
        return None
    given = header[7:].strip()
    found = None
    for token, role in tokens.items():
        if hmac.compare_digest(given.encode(), token.encode()):
            found = role
    return found


def allows(role: str, needed: str) -> bool:
    return RANK[role] >= RANK[needed]
