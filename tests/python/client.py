"""The official Python client (runpod 1.12.0, `runpod.Endpoint`) against the emulator, with one
of this repository's example workers serving the endpoint.

Run by `tests/python.rs` with EMULATOR_URL (e.g. http://127.0.0.1:8000), ENDPOINT_ID, API_KEY
and CHECKS set; CHECKS names the example serving the endpoint (echo, stream or hello).
"""

import os
import sys
import time

import runpod

runpod.api_key = os.environ["API_KEY"]
runpod.endpoint_url_base = os.environ["EMULATOR_URL"] + "/v2"
endpoint = runpod.Endpoint(os.environ["ENDPOINT_ID"])


def check(condition, message):
    if not condition:
        print(f"FAIL: {message}", flush=True)
        sys.exit(1)
    print(f"ok: {message}", flush=True)


def wait_for_status(job, wanted, seconds=10):
    deadline = time.time() + seconds
    status = None
    while time.time() < deadline:
        status = job.status()
        if status == wanted:
            return
        time.sleep(0.05)
    check(False, f"job {job.job_id} reaches {wanted} (last: {status})")


def echo_checks():
    # run_sync: the final output straight away (echo returns its input).
    output = endpoint.run_sync({"prompt": "hi"}, timeout=10)
    check(output == {"prompt": "hi"}, f"run_sync output {output!r}")

    # run, then output and status.
    job = endpoint.run({"n": 1})
    output = job.output(timeout=10)
    check(output == {"n": 1}, f"run + output {output!r}")
    check(job.status() == "COMPLETED", "status COMPLETED")

    # health is JSON with jobs and workers.
    health = endpoint.health()
    check(health["jobs"]["completed"] >= 2, f"health jobs {health['jobs']!r}")
    check(health["workers"]["idle"] + health["workers"]["running"] == 1, f"health workers {health['workers']!r}")


def stream_checks():
    # stream: each word once, then the loop ends on the final status.
    job = endpoint.run({"prompt": "the", "max_tokens": 5})
    chunks = list(job.stream())
    check(chunks == ["worker", "posts", "the", "job", "from"], f"stream chunks {chunks!r}")
    check(job.status() == "COMPLETED", "stream job COMPLETED")


def hello_checks():
    # hello works SLEEP_TIME seconds, reporting progress, and says hello.
    output = endpoint.run_sync({}, timeout=30)
    check(output == "Hello World", f"run_sync output {output!r}")

    # purge_queue: while the single slot is busy, two more jobs wait in the queue.
    held = endpoint.run({})
    wait_for_status(held, "IN_PROGRESS")
    queued = [endpoint.run({}), endpoint.run({})]
    purged = endpoint.purge_queue()
    check(purged.get("removed") == 2, f"purge_queue {purged!r}")
    check(all(j.status() == "CANCELLED" for j in queued), "purged jobs are CANCELLED")

    # cancel the running job; the worker is told through job-stop and posts nothing for it.
    cancelled = held.cancel()
    check(cancelled.get("status") == "CANCELLED", f"cancel {cancelled!r}")
    time.sleep(0.5)
    check(held.status() == "CANCELLED", "cancelled job stays CANCELLED")


{"echo": echo_checks, "stream": stream_checks, "hello": hello_checks}[os.environ["CHECKS"]]()
print("all client checks passed", flush=True)
