"""What the gRPC services share with the web kit, imported from it in this one place.

Tokens and roles (the same tokens file, the same rules), the JSON forms of payloads and
results (bytes as ``{"$bytes_base64": ...}``, the depth limit), so a job looks the same
to an HTTP and a gRPC worker, and the split of a claim's jobs into those sent and those
buried as undeliverable. When these move, only the imports below change.
"""
from __future__ import annotations

from ..web.auth import allows, token_role
from ..web.body import MAX_DEPTH, BadInput, Undeliverable, check_depth, deliverable, jsonable, loads
from ..web.delivery import rendered

__all__ = ["MAX_DEPTH", "BadInput", "Undeliverable", "allows", "check_depth", "deliverable", "jsonable",
           "loads", "rendered", "token_role"]
