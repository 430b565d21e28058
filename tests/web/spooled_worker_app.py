"""A SpooledWorker process, written as a spooled user would write it, for the compat
tests: ``python spooled_worker_app.py BASE_URL API_KEY QUEUE WORKER_ID OUT_FILE``. Each job the
SDK reports completed is appended to OUT_FILE (one id a line); a payload's ``slow`` is
the seconds its handler takes (default 0.01); SIGTERM stops it gracefully."""
from __future__ import annotations

import signal
import sys
import threading
import time

from spooled import SpooledClient, SpooledWorker


def main() -> None:
    base, key, queue, worker_id, out_path = sys.argv[1:6]
    client = SpooledClient(api_key=key, base_url=base)
    worker = SpooledWorker(client, queue_name=queue, concurrency=20, poll_interval=0.02,
                           lease_duration=5, shutdown_timeout=5, worker_id=worker_id)
    out = open(out_path, "a", buffering=1)  # noqa: SIM115 (written by every job until the process ends)

    @worker.process
    def handle(ctx):
        time.sleep(0.01 if ctx.payload.get("slow") is None else ctx.payload["slow"])
        return {"doubled": ctx.payload.get("n", 0) * 2}

    @worker.on("job:completed")
    def completed(event):
        out.write(event.job_id + "\n")

    # stop() on a thread of its own (the SDK supports it: start() waits for it): a signal
    # handler runs on the main thread wherever that thread is, possibly inside the SDK's
    # HTTP client holding its connection pool's lock, which stop()'s own calls then wait for
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=worker.stop).start())
    worker.start()


if __name__ == "__main__":
    main()
