"""Payloads and results travel as msgpack bytes; Lua never looks inside them."""
from __future__ import annotations

from typing import Any

import msgpack

from .errors import PayloadError

_packer_options = {"use_bin_type": True, "datetime": False}
_NIL: bytes = msgpack.packb(None)
# Packers ready for reuse: msgpack.packb builds one per call, which costs several times
# what packing a small payload does. One is taken per encode (list.pop and append are
# atomic), so threads and a re-entrant encode never share one; a Packer that raised has
# dropped its partial output (autoreset).
_packers: list[msgpack.Packer] = []
_SCALARS = (str, bytes, int, float, bool, type(None))   # hold no map: decode back as they are
_UNUSABLE_KEY = ("a map key decodes to a list or map, which Python cannot use as a dict key "
                 "(a tuple key encodes as a list)")


def encode(value: Any, what: str = "payload", *, check: bool = False) -> bytes:
    """msgpack-encode ``value`` or raise PayloadError naming ``what`` failed. With
    ``check``, also refuse a value whose bytes would not decode back (a tuple as a dict
    key: msgpack writes it as a list, which cannot be a dict key when read), so such a
    job is refused at enqueue instead of going dead at its first claim."""
    if value is None:
        return _NIL   # most handlers' result, packed by the worker twice per job
    try:
        packer = _packers.pop()
    except IndexError:
        packer = msgpack.Packer(**_packer_options)
    try:
        data: bytes = packer.pack(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise PayloadError(f"{what} cannot be encoded with msgpack: {exc}") from None
    finally:
        _packers.append(packer)
    if check and not isinstance(value, _SCALARS):
        try:
            msgpack.unpackb(data, raw=True, strict_map_key=False)  # raw: strings stay bytes, 1.5-3x cheaper
        except (TypeError, ValueError) as exc:  # msgpack's own errors are ValueErrors
            raise PayloadError(f"{what} encodes but cannot be decoded again: {_reason(exc)}") from None
    return data


def decode(data: bytes | None, what: str = "payload") -> Any:
    """Decode msgpack bytes (None stays None) or raise PayloadError."""
    if data is None:
        return None
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except TypeError as exc:  # valid msgpack, but not buildable as Python values
        raise PayloadError(f"stored {what} cannot be decoded: {_reason(exc)}") from None
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise PayloadError(f"stored {what} is not valid msgpack: {exc}") from None


def _reason(exc: Exception) -> str:
    if isinstance(exc, TypeError) and "unhashable" in str(exc):
        return f"{_UNUSABLE_KEY}: {exc}"
    return f"{type(exc).__name__}: {exc}"
