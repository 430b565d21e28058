"""What the gRPC services share with the HTTP server, imported from it in this one place.

Tokens and roles (the same tokens file, the same rules), the live leases of a worker
(what the REST compat layer's deregister gives back, here gRPC's), and the JSON forms of payloads
and results (bytes as ``{"$bytes_base64": ...}``, depth limits), so a job looks the same
to an HTTP and a gRPC worker. When these modules move, only the imports below change.
"""
from __future__ import annotations

from ..http.auth import allows, token_role
from ..compat.common import leases_of
from ..http.wire import MAX_DEPTH, BadInput, Undeliverable, check_depth, deliverable, jsonable, loads

__all__ = ["MAX_DEPTH", "BadInput", "Undeliverable", "allows", "check_depth", "deliverable", "jsonable", "leases_of", "loads",
           "token_role"]
