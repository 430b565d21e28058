"""Real worker processes for the crash and fault tests: ``chaos_app.py`` (notes in files,
nothing in Redis, for tests that break Redis) or ``worker_app.py`` (notes in Redis lists),
each configured by ``APP_*`` environment variables. None outlives its test (``close()``)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

CHAOS_APP = Path(__file__).with_name("chaos_app.py")
WORKER_APP = Path(__file__).with_name("worker_app.py")


class Workers:
    """Processes of ``app`` on ``url`` and ``prefix``, each logging to ``<dir>/worker<n>.log``;
    ``settings`` become ``APP_<NAME>`` variables (``start`` may add or override some)."""

    def __init__(self, url: str, prefix: str, dir: Path, app: Path = CHAOS_APP, **settings: object) -> None:
        self.url, self.prefix, self.dir, self.app = url, prefix, Path(dir), app
        self.notes = self.dir / "notes"
        self.notes.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.procs: list[subprocess.Popen] = []

    def start(self, **settings: object) -> subprocess.Popen:
        env = dict(os.environ, REDISPOOL_URL=self.url, REDISPOOL_PREFIX=self.prefix, APP_NOTES=str(self.notes),
                   **{f"APP_{k.upper()}": str(v) for k, v in {**self.settings, **settings}.items()})
        with open(self.dir / f"worker{len(self.procs)}.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, str(self.app)], env=env, stdout=log, stderr=subprocess.STDOUT)
        proc.log_path = log.name  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def live(self) -> list[subprocess.Popen]:
        return [p for p in self.procs if p.poll() is None]

    def log(self, proc: subprocess.Popen) -> str:
        return Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]

    def lines(self, kind: str) -> list[list[str]]:
        """chaos_app's notes of ``kind`` from every process: "ran" ([queue, id, attempt]) or
        "done" ([queue, id])."""
        out = []
        for path in sorted(self.notes.glob(f"*.{kind}")):
            out += [line.split() for line in path.read_text().splitlines() if line]
        return out

    def stop(self, proc: subprocess.Popen, timeout: float = 20) -> int:
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def terminate(proc: subprocess.Popen, timeout: float = 10) -> int:
    """SIGTERM ``proc`` and wait for it; SIGKILL it after ``timeout`` seconds. Its exit code."""
    proc.terminate()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()
