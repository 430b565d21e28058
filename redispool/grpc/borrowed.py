"""What the gRPC services share with the web kit, imported from it in this one place.

Tokens and roles (the same tokens file, the same rules), the JSON forms of payloads and
results (bytes as ``{"$bytes_base64": ...}``, the depth limit), so a job looks the same
to an HTTP and a gRPC worker, and the live leases of a worker with their tokens (what
the REST compat layer's deregister gives back; spooled's gRPC Deregister does the same).
When these move, only the imports below change.
"""
from __future__ import annotations

from ..compat.common import leases_of  # a face's helper: a candidate for web/ or the Engine
from ..web.auth import allows, token_role
from ..web.body import MAX_DEPTH, BadInput, Undeliverable, check_depth, deliverable, jsonable, loads

__all__ = ["MAX_DEPTH", "BadInput", "Undeliverable", "allows", "check_depth", "deliverable", "jsonable",
           "leases_of", "loads", "token_role"]
