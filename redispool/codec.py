"""Payloads and results travel as msgpack bytes; Lua never looks inside them."""
from __future__ import annotations

from typing import Any

import msgpack

from .errors import PayloadError

_packer_options = {"use_bin_type": True, "datetime": False}


def encode(value: Any, what: str = "payload") -> bytes:
    """msgpack-encode ``value`` or raise PayloadError naming ``what`` failed."""
    try:
        return msgpack.packb(value, **_packer_options)
    except (TypeError, ValueError, OverflowError) as exc:
        raise PayloadError(f"{what} cannot be encoded with msgpack: {exc}") from None


def decode(data: bytes | None, what: str = "payload") -> Any:
    """Decode msgpack bytes (None stays None) or raise PayloadError."""
    if data is None:
        return None
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise PayloadError(f"stored {what} is not valid msgpack: {exc}") from None
