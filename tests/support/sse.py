"""Reading a Server-Sent Events response in tests: ``Stream`` reads one on a thread, so a
test can wait for its next frame with a timeout (``/v1/events`` and the dashboard's feed)."""
from __future__ import annotations

import json
import queue as queues
import threading
import time

import httpx

END = object()   # what ``Stream.next`` returns once the stream has ended


class Stream:
    """An SSE response of ``GET path`` read on a thread: ``frames`` gets one dict per event
    (its fields: id, event, data as JSON) or comment ({"comment": text}), then END when
    the stream ends."""

    def __init__(self, client: httpx.Client, params: list[tuple[str, str]], headers: dict | None = None,
                 path: str = "/v1/events") -> None:
        self.frames: queues.Queue = queues.Queue()
        self.response: httpx.Response | None = None
        self.opened = threading.Event()
        self.client = client
        self._thread = threading.Thread(target=self._read, args=(path, params, headers or {}), daemon=True)
        self._thread.start()
        assert self.opened.wait(10), "the stream opens"

    def _read(self, path, params, headers) -> None:
        try:
            with self.client.stream("GET", path, params=params, headers=headers) as response:
                self.response = response
                self.opened.set()
                frame: dict = {}
                for line in response.iter_lines():
                    if line.startswith(":"):
                        self.frames.put({"comment": line[1:].strip()})
                    elif not line:
                        if frame:
                            self.frames.put(frame)
                        frame = {}
                    else:
                        name, _, value = line.partition(": ")
                        frame[name] = json.loads(value) if name == "data" else value
        except httpx.HTTPError:
            pass
        finally:
            self.opened.set()
            self.frames.put(END)

    def next(self, timeout: float = 10, comments: bool = False):
        deadline = time.monotonic() + timeout
        while True:
            item = self.frames.get(timeout=max(0.01, deadline - time.monotonic()))
            if item is END or comments or "comment" not in item:
                return item

    def events(self, n: int, timeout: float = 10) -> list[dict]:
        return [self.next(timeout) for _ in range(n)]

    def close(self) -> None:
        if self.response is not None:
            self.response.close()
