"""A Python SDK (runpod 1.12.0) worker, run by `tests/python.rs` against the emulator with the
environment from `EmulatorHandle::worker_env`. HANDLER=stream selects a generator handler."""

import asyncio
import os

import runpod


async def plain(job):
    data = job["input"] or {}
    if data.get("fail"):
        raise ValueError("boom")
    if "progress" in data:
        runpod.serverless.progress_update(job, {"pct": 50})
        await asyncio.sleep(data["progress"])
    if data.get("hold"):
        await asyncio.sleep(60)
    return {"echo": data, "worker": os.environ["RUNPOD_POD_ID"]}


async def stream(job):
    data = job["input"] or {}
    for chunk in data.get("chunks", []):
        yield chunk
        await asyncio.sleep(0.05)
    if data.get("fail"):
        raise ValueError("stream boom")


if os.environ.get("HANDLER") == "stream":
    runpod.serverless.start({"handler": stream, "return_aggregate_stream": True})
else:
    runpod.serverless.start({"handler": plain})
