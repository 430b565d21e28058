"""bin/peers' producer process: ``produce.py SYSTEM JOBS BATCH`` puts JOBS jobs into
SYSTEM's queue through bin/peers_apps/SYSTEM_app.py, one call per job (BATCH 0) or one
bulk call per BATCH jobs.

It talks to bin/peers in lines so that the figures leave out its start: after the first
call (which opens the connection and loads what the system loads) it prints ``ready`` and
waits for a line; then it makes the other calls and prints {"jobs", "seconds",
"cpu_seconds"} (wall clock and this process's CPU) as one JSON line, and waits for a last
line before it exits (its connection still open while bin/peers reads Redis's memory).
"""
import importlib
import json
import sys
import time


def main() -> None:
    system, jobs, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    app = importlib.import_module(f"{system}_app")
    step = batch or 1
    calls = [range(i, min(jobs, i + step)) for i in range(0, jobs, step)]
    call = app.enqueue_many if batch else (lambda ns: app.enqueue(ns[0]))
    call(calls[0])
    print("ready", flush=True)
    sys.stdin.readline()
    started, cpu = time.perf_counter(), time.process_time()
    for ns in calls[1:]:
        call(ns)
    print(json.dumps({"jobs": jobs - len(calls[0]), "seconds": time.perf_counter() - started,
                      "cpu_seconds": time.process_time() - cpu}), flush=True)
    sys.stdin.readline()


if __name__ == "__main__":
    main()
