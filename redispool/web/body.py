"""Request bodies in, JSON out: the same for every face.

- ``read_json``: the request's JSON body, at most ``MAX_BODY`` bytes (1 MiB), NaN and
  Infinity refused (Python's json takes them; a Go or Node client would then get a string
  or fail), as is a number past the range of a double (Python reads ``1e400`` as Infinity)
  and a string with a lone UTF-16 surrogate (``"\ud800"``: JSON can write
  half a pair, which is no character, and neither Redis, msgpack nor the answer can
  encode it), ``EMPTY`` when there is none.
- ``fields``: one body checked against a field spec, name -> ``Field`` or
  ``(allowed types..., default)``. ``strict`` (the native API): an unknown field or a null
  where none is allowed is bad input. Not strict (the hosted services' protocols, whose
  own clients send only known fields): unknown fields are left out and a null reads as
  absent.
- ``jsonable`` / ``deliverable`` / ``check_depth``: what JSON cannot carry in a payload
  or result (bytes, NaN from a Python producer) in the tagged forms of
  ``redispool.tojson``, and nesting capped at ``MAX_DEPTH`` levels so that every stored
  job can be handed back (the encoder and many clients' decoders stop not far above).

Every refusal here is a ``RedispoolError``; each face's ``Dialect`` (endpoint.py) says
with which status and code it is answered.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import ClientDisconnect, Request

from ..errors import RedispoolError
from ..tojson import jsonable as _json  # recursive: see deliverable()

MAX_BODY = 1 << 20   # 1 MiB
MAX_DEPTH = 100      # levels of lists/objects in one payload or result
REQUIRED: Any = object()   # the default of a field that must be given


class _Empty:
    """The body of a request that sent none (told apart from a JSON ``null``)."""

    def __repr__(self) -> str:
        return "EMPTY"


EMPTY: Any = _Empty()


class BadInput(RedispoolError, ValueError):
    """A request body or parameter is malformed (the native API's 400)."""


class FieldError(BadInput):
    """A field of a body is missing, of the wrong JSON type, or unknown."""


class BadJson(BadInput):
    """A body that is not JSON (or not JSON this server can read)."""


class ClientGone(BadJson):
    """The client went away, or was cut off, before its body arrived: nobody reads the answer."""


class BodyTooLarge(RedispoolError):
    """A body over ``MAX_BODY`` bytes (answered 413)."""


class Undeliverable(RedispoolError, ValueError):
    """A stored payload or result that cannot be sent as JSON (nested too deep)."""


@dataclass(frozen=True)
class Field:
    """One field of a body: the JSON types it may hold (``None`` for null, ``Any`` for any
    value), its default (``REQUIRED``: none) and the rest of its JSON Schema (bounds,
    pattern, description), which the OpenAPI document shows."""

    types: tuple[Any, ...]
    default: Any = REQUIRED
    schema: Mapping[str, Any] = field(default_factory=dict)


Spec = Mapping[str, "Field | tuple[Any, ...]"]


def _field(spec: Field | tuple[Any, ...]) -> Field:
    return spec if isinstance(spec, Field) else Field(tuple(spec[:-1]), spec[-1])


# ---------------------------------------------------------------------- reading
async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The request's body bytes; BodyTooLarge past ``limit`` (declared or sent)."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise BodyTooLarge(f"the body is over {limit} bytes")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"the body is over {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # gone, or cut off at the read timeout: nobody reads the answer
        raise ClientGone("the client went away before its body arrived") from None
    return b"".join(chunks)


def _not_json(constant: str) -> Any:
    raise BadJson(f"the body holds {constant}, which is not JSON (send numbers, or null)")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise BadJson(f"the body holds the number {text[:20]}{'...' if len(text) > 20 else ''}, past the range "
                      "of a double (JSON numbers are read as doubles)")
    return value


# a surrogate as JSON writes it (\uD800-\uDFFF), and as UTF-8 bytes (ED A0-BF: never valid UTF-8)
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def loads(raw: bytes | str, what: str = "the body") -> Any:
    """Strict JSON: NaN/Infinity refused (BadJson), as are text that is not JSON, a number
    past the range of a double and a string holding a lone surrogate. ``what`` names the
    text in the error (a gRPC field, say)."""
    try:
        value = json.loads(raw, parse_constant=_not_json, parse_float=_finite)
    except BadJson as exc:   # (from the hooks below, which say "the body")
        if what == "the body":
            raise
        raise BadJson(str(exc).replace("the body", what, 1)) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadJson(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadJson(f"{what} nests deeper than JSON can be read here (keep payloads within "
                      f"{MAX_DEPTH} levels)") from None
    if _may_hold_surrogates(raw) and _holds_surrogate(value):
        raise BadJson(f"{what} is not valid JSON: a string holds a lone UTF-16 surrogate (U+D800-U+DFFF), "
                      "which is no character")
    return value


def _may_hold_surrogates(raw: bytes | str) -> bool:
    """False when ``raw`` cannot hold a surrogate (the usual case, checked at C speed)."""
    if isinstance(raw, str):
        return bool(_SURROGATE.search(raw)) or "\\u" in raw
    if json.detect_encoding(raw) != "utf-8":   # UTF-16/32 JSON: walk it
        return True
    return bool(_ESCAPED_SURROGATE.search(raw))


def _holds_surrogate(value: Any) -> bool:
    """Whether a decoded JSON value has a surrogate in a string or key (iterative: no
    input exhausts the stack). A valid pair was decoded to its one character."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


async def read_json(request: Request, *, max_depth: int | None = None, limit: int = MAX_BODY) -> Any:
    """The request's JSON body, EMPTY when there is none (zero bytes: whitespace alone is
    not JSON, so BadJson); ``max_depth``: refuse a body that nests deeper (BadJson) before
    any handler recurses into it."""
    raw = await read_body(request, limit)
    if not raw:
        return EMPTY
    body = loads(raw)
    if max_depth is not None and depth(body, max_depth) > max_depth:
        raise BadJson(f"the body is not valid JSON: nested deeper than {MAX_DEPTH} levels "
                      "(a payload cannot be handed back)")
    return body


# ---------------------------------------------------------------------- checking
def fields(body: Any, spec: Spec, where: str = "the body", *, strict: bool = True) -> dict[str, Any]:
    """``body`` (a JSON object; EMPTY, and when not ``strict`` null, read as ``{}``)
    checked against ``spec``: every field of ``spec`` with its value or default (see the
    module's docstring for ``strict``)."""
    if body is EMPTY or (body is None and not strict):
        body = {}
    if not isinstance(body, dict):
        raise FieldError(f"{where} must be a JSON object")
    if strict:
        unknown = set(body) - set(spec)
        if unknown:
            raise FieldError(f"unknown field(s) in {where}: {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    for name, raw_spec in spec.items():
        f = _field(raw_spec)
        if name not in body or (not strict and body[name] is None and None not in f.types):
            if f.default is REQUIRED:
                raise FieldError(f"{where} needs the field {name!r}")
            out[name] = f.default
            continue
        value = body[name]
        if f.types and not any(is_a(value, t) for t in f.types):
            names = "/".join("null" if t is None else getattr(t, "__name__", str(t)) for t in f.types)
            raise FieldError(f"{name} must be {names}, got {json.dumps(value)[:80]}")
        out[name] = value
    return out


def is_a(value: Any, kind: Any) -> bool:
    """Whether a decoded JSON value is of ``kind`` (a bool is no number; a number is finite)."""
    if kind is Any:
        return True
    if kind is None:
        return value is None
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, kind)


JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean", list: "array", dict: "object"}


def field_schema(f: Field) -> dict[str, Any]:
    """The JSON Schema of one field: its type (none for ``Any``; ``nullable`` when it may
    be null), its default, and the rest of its schema."""
    kinds = [t for t in f.types if t is not None and t is not Any]
    out: dict[str, Any] = {}
    if len(kinds) == 1 and "$ref" not in f.schema:
        out["type"] = JSON_TYPES[kinds[0]]
    out.update(f.schema)
    if f.default is not REQUIRED and f.default is not None:
        out["default"] = f.default
    if None in f.types:
        out["nullable"] = True
    return out


def body_schema(spec: Spec) -> dict[str, Any]:
    """The JSON Schema of a body ``spec`` (strict: no other field is allowed)."""
    fs = {name: _field(s) for name, s in spec.items()}
    out: dict[str, Any] = {"type": "object", "properties": {name: field_schema(f) for name, f in fs.items()},
                           "additionalProperties": False}
    required = [name for name, f in fs.items() if f.default is REQUIRED]
    if required:
        out["required"] = required
    return out


# ---------------------------------------------------------------------- writing
def depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deep ``value`` nests lists and dicts (a scalar is 0), counting no further than
    ``limit + 1``; iterative, so no input can exhaust the stack."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def check_depth(value: Any, what: str = "payload") -> Any:
    """``value`` itself, or BadInput when it nests deeper than MAX_DEPTH."""
    if depth(value) > MAX_DEPTH:
        raise BadInput(f"{what} nests lists/objects deeper than {MAX_DEPTH} levels")
    return value


def deliverable(value: Any, what: str = "payload") -> Any:
    """The JSON form of ``value``, or Undeliverable when it nests deeper than MAX_DEPTH (a
    job stored by a Python producer can): checked before anything recurses into it."""
    if depth(value) > MAX_DEPTH:
        raise Undeliverable(f"{what} nests deeper than {MAX_DEPTH} levels: it cannot be sent as JSON")
    return _json(value)


def jsonable(value: Any) -> Any:
    """A decoded payload or result as JSON can carry it, for reading: one nested too deep
    to send shows as ``{"$undeliverable": "<why>"}`` instead."""
    try:
        return deliverable(value, "value")
    except Undeliverable as exc:
        return {"$undeliverable": str(exc)}
