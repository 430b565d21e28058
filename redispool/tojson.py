"""Decoded payloads, results and records as strict JSON: one encoding for every face
(the HTTP API, ``redispool ... --json``, the dashboard).

msgpack carries what JSON cannot, and Python producers send it: bytes, and the floats
NaN, Infinity and -Infinity (``json.dumps`` would write them as bare ``NaN`` tokens that
jq, ``JSON.parse`` and Go refuse). They are written as tagged objects, so they can be told
apart from strings: ``{"$bytes_base64": "AP8="}`` and ``{"$float": "NaN"}`` (or
``"Infinity"``, ``"-Infinity"``). Map keys become strings, as in any JSON; anything else
JSON lacks is written as its ``str()``.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import math
from typing import TypeAlias

# What jsonable() returns: the values json.dumps writes as they are.
JSON: TypeAlias = "None | bool | int | float | str | list[JSON] | dict[str, JSON]"

BYTES_TAG = "$bytes_base64"
FLOAT_TAG = "$float"
_FLOATS = {math.inf: "Infinity", -math.inf: "-Infinity"}


def jsonable(value: object) -> JSON:
    """``value`` with every part JSON cannot carry replaced by its tagged form
    (dataclass records become objects of their fields)."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {FLOAT_TAG: "NaN" if math.isnan(value) else _FLOATS[value]}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {BYTES_TAG: base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dict):
        return {_key(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return str(value)


def _key(key: object) -> str:
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(key)  # as json.dumps writes keys: 1 -> "1", True -> "true"
    if isinstance(key, bytes):
        return key.decode("utf-8", "backslashreplace")
    return str(key)


def dumps(value: object, *, indent: int | None = None) -> str:
    """Strict JSON text of ``value`` (never NaN/Infinity tokens, never invalid UTF-8)."""
    return json.dumps(jsonable(value), indent=indent, allow_nan=False)
