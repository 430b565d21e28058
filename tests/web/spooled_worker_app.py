"""A SpooledWorker process, written as a spooled user would write it, for the compat
tests: ``python spooled_worker_app.py BASE_URL API_KEY QUEUE WORKER_ID OUT_FILE``. Each job the
SDK reports completed is appended to OUT_FILE (one id a line); a payload's ``slow`` is
the seconds its handler takes (default 0.01); SIGTERM stops it gracefully."""
from __future__ import annotations

import signal
import sys
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

    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    worker.start()


if __name__ == "__main__":
    main()
