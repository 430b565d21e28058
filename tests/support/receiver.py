"""A loopback webhook receiver for tests: records every request and answers as told."""
from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    method: str = "POST"

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """``answer(request) -> (status, body, extra headers)`` decides each answer (default 200)."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    answer: Callable[[Received], tuple[int, bytes, dict[str, str]]] = lambda r: (200, b"ok", {})
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self) -> list[Any]:
        with self.lock:
            return [r.json for r in self.requests]


@contextmanager
def receiving(answer: Callable[[Received], tuple[int, bytes, dict[str, str]]] | None = None
              ) -> Iterator[Receiver]:
    receiver = Receiver()
    if answer is not None:
        receiver.answer = answer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"   # keep-alive, as real receivers
        wbufsize = 1 << 16              # headers and body in one write (no Nagle/delayed-ACK stall)

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if len(body) < length:
                # the sender died between its headers and its body (a deliverer SIGKILLed
                # mid-POST): no request arrived, as a real receiver sees it, so none is
                # recorded (this one, body b"", once failed a test's JSON decoding)
                self.close_connection = True
                return
            got = Received(self.path, dict(self.headers.items()), body, self.command)
            with receiver.lock:
                receiver.requests.append(got)
            status, text, extra = receiver.answer(got)
            self.send_response(status)
            for k, v in extra.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        do_PUT = do_PATCH = do_POST  # noqa: N815 - a webhook cue's method may be either

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
