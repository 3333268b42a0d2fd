"""The official Python client (runpod 1.12.0, `runpod.Endpoint`) against the emulator.

Run by `tests/python.rs` with EMULATOR_URL (e.g. http://127.0.0.1:8000), ENDPOINT_ID and
API_KEY set, while a test worker serves the endpoint: it echoes `{"echo": input}`, streams the
items of `input.stream`, and holds `input.hold` jobs until they are cancelled.
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


def wait_for_status(job, wanted, seconds=5):
    deadline = time.time() + seconds
    while time.time() < deadline:
        status = job.status()
        if status == wanted:
            return
        time.sleep(0.05)
    check(False, f"job {job.job_id} reaches {wanted} (last: {status})")


# run_sync: the final output straight away.
output = endpoint.run_sync({"prompt": "hi"}, timeout=10)
check(output == {"echo": {"prompt": "hi"}}, f"run_sync output {output!r}")

# run, then status and output.
job = endpoint.run({"n": 1})
output = job.output(timeout=10)
check(output == {"echo": {"n": 1}}, f"run + output {output!r}")
check(job.status() == "COMPLETED", "status COMPLETED")

# stream: chunks once each, then the loop ends on the final status.
job = endpoint.run({"stream": ["a", "b", "c"]})
chunks = list(job.stream())
check(chunks == ["a", "b", "c"], f"stream chunks {chunks!r}")

# health is JSON with jobs and workers.
health = endpoint.health()
check(health["jobs"]["completed"] >= 3, f"health jobs {health['jobs']!r}")
check(health["workers"]["idle"] + health["workers"]["running"] == 1, f"health workers {health['workers']!r}")

# purge_queue: while the single worker holds a job, two more wait in the queue.
held = endpoint.run({"hold": True})
wait_for_status(held, "IN_PROGRESS")
queued = [endpoint.run({"n": 2}), endpoint.run({"n": 3})]
purged = endpoint.purge_queue()
check(purged.get("removed") == 2, f"purge_queue {purged!r}")
check(all(j.status() == "CANCELLED" for j in queued), "purged jobs are CANCELLED")

# cancel the held job; the worker is told through job-stop.
cancelled = held.cancel()
check(cancelled.get("status") == "CANCELLED", f"cancel {cancelled!r}")
check(held.status() == "CANCELLED", "cancelled job status")

# The worker is free again.
output = endpoint.run_sync({"n": 4}, timeout=10)
check(output == {"echo": {"n": 4}}, f"run_sync after cancel {output!r}")
print("all client checks passed", flush=True)
