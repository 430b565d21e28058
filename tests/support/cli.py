"""The ``redispool`` command line in tests: in process through click's runner, and as a
real subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner, Result

from redispool import defaults
from redispool.cli import cli

from support import ROOT


def invoke(url: str, prefix: str, *args: str, code: int = 0, input: str | None = None) -> Result:
    """``redispool --url URL --prefix PREFIX ARGS`` through click's runner. Asserts the exit
    code, and that a failure says so in one stderr line without a traceback."""
    # `worker` sets REDISPOOL_URL/PREFIX for the app it imports: env= restores them after
    result = CliRunner().invoke(cli, ["--url", url, "--prefix", prefix, *args], catch_exceptions=False,
                                env={defaults.URL_ENV: None, defaults.PREFIX_ENV: None}, input=input)
    assert result.exit_code == code, (result.output, result.stderr)
    if code:
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr
    return result


def cli_process(*args: str, env: dict | None = None, cwd: Path = ROOT, **kw) -> subprocess.Popen:
    """``python -m redispool ARGS`` with this checkout first on its path; text pipes."""
    return subprocess.Popen([sys.executable, "-m", "redispool", *args], cwd=cwd,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                            **{"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **kw})
