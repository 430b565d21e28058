"""A tiny HTTP health endpoint for probes (Kubernetes and the like).

Any GET answers 200 ``ok`` while ``check()`` returns True and 503 while it returns False
or raises. It runs the stdlib ``ThreadingHTTPServer`` in a daemon thread. It listens on
127.0.0.1 unless told otherwise (a container passes 0.0.0.0 so its orchestrator can probe).
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HealthServer:
    """Serves ``check()`` as 200/503 on ``host:port`` (port 0 picks a free one: see ``port``)."""

    def __init__(self, check: Callable[[], bool], port: int, host: str = "127.0.0.1") -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                try:
                    ok = bool(check())
                except Exception:
                    ok = False
                body = b"ok\n" if ok else b"redis unreachable\n"
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass  # probes every few seconds would flood the log

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="redispool-health",
                                        daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
