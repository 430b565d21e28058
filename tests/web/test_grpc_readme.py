"""The README's gRPC walk-through, run as written against a real `redispool serve
--grpc-port`: reflection lists the services (what `grpcurl list` shows), health says
SERVING, the enqueue calls work and the Work-stream worker finishes its three jobs."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid

from support import ROOT
from support.rpc import TOKENS, GrpcServed, tokens_file


def walkthrough() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("```python\n", text.index("\n## gRPC\n")) + len("```python\n")
    return text[start:text.index("```", start)]


def test_the_readme_grpc_walkthrough_runs(redis_url, tmp_path):
    script = walkthrough()
    assert "127.0.0.1:50051" in script and '"TOKEN"' in script
    served = GrpcServed(redis_url, f"gr{uuid.uuid4().hex[:6]}", tokens=tokens_file(tmp_path)).wait_ready()
    try:
        r = subprocess.run([sys.executable, "-c", script.replace("127.0.0.1:50051", served.address)
                            .replace('"TOKEN"', repr(TOKENS["worker"]))],
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)
    finally:
        assert served.stop() == 0, served.output
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for name in ("redispool.v1.Jobs", "spooled.v1.QueueService", "spooled.v1.WorkerService",
                 "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"):
        assert name in lines[0]
    assert lines[1] == "1"                     # SERVING
    assert lines[-1] == "done 3"
    got = [line for line in lines if line.startswith("got")]
    assert got and all(line.count("example.com") <= 2 for line in got)   # never more than the credit
