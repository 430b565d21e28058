"""What the tests share besides fixtures (those are in tests/conftest.py and each tier's
conftest.py): private Redis topologies (``servers``), waiting for a condition or a daemon
thread (``waiting``), a ``redispool serve`` process (``served``, ``compat``), the CLI
(``cli``) and real worker processes (``processes``, running ``chaos_app.py`` or
``worker_app.py``).

Tests import it as ``support`` (pytest puts ``tests/`` on ``sys.path`` for the root
conftest); nothing imports ``conftest`` itself.
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository: the working directory of ``redispool`` subprocesses."""
