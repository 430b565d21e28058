"""Leased jobs on their way out, the same for every face (``/v1``, compat, gRPC).

A claim has leased the jobs before any is turned into what the client is sent; one
whose payload cannot be sent (nested too deep for JSON, or for a protobuf Struct) must
not cost its batch-mates their delivery. ``rendered`` sets such a job apart with the
reason its face buries it under (``AsyncEngine.bury``: dead, with that error), so no face
holds a second copy of the split.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from ..models import Job
from .body import Undeliverable

T = TypeVar("T")


def rendered(jobs: Sequence[Job], render: Callable[[Job], T],
             refused: tuple[type[Exception], ...] = (Undeliverable,)
             ) -> tuple[list[T], list[Job], list[tuple[Job, str]]]:
    """``render`` of each job, in order, with the jobs rendered, and the jobs it
    ``refused`` (raised one of these) each with the error to bury it with."""
    out: list[T] = []
    sent: list[Job] = []
    broken: list[tuple[Job, str]] = []
    for job in jobs:
        try:
            out.append(render(job))
        except refused as exc:
            broken.append((job, f"Undeliverable: {exc}"))
        else:
            sent.append(job)
    return out, sent, broken
