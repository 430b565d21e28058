"""The README's curl walk-through of an HTTP worker's life, run as written (bash, curl, jq)
against a real `redispool serve`: what a reader pastes must work."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid

import pytest

pytest.importorskip("starlette")

from support import ROOT  # noqa: E402
from support.served import Served  # noqa: E402

pytestmark = pytest.mark.slow


def walkthrough() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("A worker's whole life with curl and jq")
    start = text.index("```sh\n", start) + len("```sh\n")
    return text[start:text.index("```", start)]


def test_the_readme_walkthrough_runs(redis_url):
    for tool in ("curl", "jq", "bash"):
        if shutil.which(tool) is None:
            if os.environ.get("CI") == "true":
                pytest.fail(f"{tool} is missing (CI must install it)")
            pytest.skip(f"{tool} is not installed")
    script = walkthrough()
    assert "http://127.0.0.1:8080" in script
    server = Served(redis_url, f"rd{uuid.uuid4().hex[:8]}").wait_ready()
    try:
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", script.replace("http://127.0.0.1:8080", server.base)],
                           env={"PATH": "/usr/bin:/bin:/usr/local/bin", "T": "any"}, capture_output=True, text=True,
                           timeout=60)
    finally:
        assert server.stop() == 0
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert '{"id":"1","created":true}' in out
    assert '"token":' in out and '{"state":"done"}' in out
    assert '"error":"lease_lost"' in out and re.search(r"(^|[}\n])done\n", out)
    assert '{"ids":["3","4"]}' in out
    assert out.rstrip().endswith('{"results":[{"id":"3","ok":true,"state":"done"},{"id":"4","ok":true,"state":"done"}],'
                                 '"jobs":[]}')
